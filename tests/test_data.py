import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nif_zoo import data
from nif_zoo.data import DataError

# ----------------------------------------------------------------------------- Fashion-MNIST

needs_fashion_mnist = pytest.mark.skipif(
    not data.FASHION_MNIST_ROOT.is_dir(), reason="apt-get install -y dataset-fashion-mnist"
)


@pytest.fixture(scope="module")
def fashion_mnist_train():
    return data.load_fashion_mnist("train")


@needs_fashion_mnist
def test_fashion_mnist_test_split():
    images, labels = data.load_fashion_mnist("test")
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert set(np.unique(labels)) == set(range(10))
    assert images.max() == 255 and images.min() == 0


@needs_fashion_mnist
def test_fashion_mnist_train_split(fashion_mnist_train):
    images, labels = fashion_mnist_train
    assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.min() == 0 and labels.max() == 9


@needs_fashion_mnist
def test_paper_split_sizes_and_order(fashion_mnist_train):
    test_images, test_labels = data.load_fashion_mnist("test")
    images = np.concatenate([fashion_mnist_train[0], test_images])
    labels = np.concatenate([fashion_mnist_train[1], test_labels])
    parts = data.paper_split(images, labels)
    assert {k: len(v[0]) for k, v in parts.items()} == {"train": 42000, "val": 14000, "test": 14000}
    # The authors' cut is unshuffled: train, then test, then validation.
    np.testing.assert_array_equal(parts["train"][0], images[:42000])
    np.testing.assert_array_equal(parts["test"][1], labels[42000:56000])
    np.testing.assert_array_equal(parts["val"][0][-1], test_images[-1])


def test_paper_split_with_seed_is_a_deterministic_partition():
    images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
    a = data.paper_split(images, None, seed=3)
    b = data.paper_split(images, None, seed=3)
    assert a["val"][1] is None
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(a[name][0], b[name][0])
    together = np.concatenate([a[k][0] for k in ("train", "val", "test")]).ravel()
    assert sorted(together) == list(range(100))
    assert not np.array_equal(a["train"][0].ravel(), np.arange(60))


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def test_fashion_mnist_reads_ungzipped_files_and_validates_magic(tmp_path):
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images, compress=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([3, 7]), compress=True)
    loaded, labels = data.load_fashion_mnist("test", root=tmp_path)
    np.testing.assert_array_equal(loaded[..., 0], images)
    np.testing.assert_array_equal(labels, [3, 7])

    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros((2, 1)), compress=True)
    with pytest.raises(DataError, match="magic"):
        data.load_fashion_mnist("test", root=tmp_path)


def test_fashion_mnist_missing_directory_says_how_to_install(tmp_path):
    with pytest.raises(DataError, match="apt-get install -y dataset-fashion-mnist"):
        data.load_fashion_mnist("train", root=tmp_path / "nowhere")


# ----------------------------------------------------------------------------- CIFAR-10


def _cifar_records(labels: list[int], start: int) -> tuple[bytes, np.ndarray]:
    """Records whose pixel (c, y, x) of image i is distinct, plus the expected HWC images."""
    chw = (np.arange(len(labels) * 3072).reshape(-1, 3, 32, 32) + start) % 251
    records = np.concatenate([np.array(labels)[:, None], chw.reshape(-1, 3072)], axis=1)
    return records.astype(np.uint8).tobytes(), chw.transpose(0, 2, 3, 1).astype(np.uint8)


def test_cifar10_binary_batches(tmp_path):
    directory = tmp_path / "cifar-10-batches-bin"
    directory.mkdir()
    expected = []
    for i in range(1, 6):
        records, hwc = _cifar_records([i, 9, 0, 1, 2], start=i)
        (directory / f"data_batch_{i}.bin").write_bytes(records)
        expected.append(hwc)
    records, _ = _cifar_records([4, 4], start=0)
    (directory / "test_batch.bin").write_bytes(records)

    images, labels = data.load_cifar10(tmp_path, "train")
    assert images.shape == (25, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and list(labels[:5]) == [1, 9, 0, 1, 2]
    np.testing.assert_array_equal(images, np.concatenate(expected))
    # CHW -> HWC: byte 1 + c*1024 + y*32 + x of a record is pixel [y, x, c].
    raw = np.frombuffer((directory / "data_batch_1.bin").read_bytes(), np.uint8)
    assert images[0, 5, 7, 2] == raw[1 + 2 * 1024 + 5 * 32 + 7]

    test_images, test_labels = data.load_cifar10(directory, "test")
    assert test_images.shape == (2, 32, 32, 3) and list(test_labels) == [4, 4]


def test_cifar10_rejects_truncated_file(tmp_path):
    (tmp_path / "test_batch.bin").write_bytes(b"\0" * 3000)
    with pytest.raises(DataError, match="test_batch.bin"):
        data.load_cifar10(tmp_path, "test")


# ----------------------------------------------------------------------------- CelebA


def test_celeba_stride_and_crop(tmp_path):
    # Raw pixel (y, x) of file k holds (y, x, 40 * k): smooth enough to survive JPEG.
    rows, cols = np.meshgrid(np.arange(218), np.arange(178), indexing="ij")
    for k in (3, 1, 2):
        raw = np.stack([rows, cols, np.full_like(rows, 40 * k)], axis=-1).astype(np.uint8)
        Image.fromarray(raw).save(tmp_path / f"{k:06d}.jpg", quality=100, subsampling=0)
    images, labels = data.load_celeba(tmp_path)
    assert images.shape == (3, 64, 64, 3) and images.dtype == np.uint8 and labels is None
    # Output (r, c) is raw (2r + 26*2, 2c + 12*2): stride 2, then crop rows 26:, cols 12:.
    out_rows, out_cols = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    for i, k in enumerate((1, 2, 3)):  # sorted file order
        expected = np.stack([2 * out_rows + 52, 2 * out_cols + 24, np.full_like(out_rows, 40 * k)])
        error = images[i].astype(int) - expected.transpose(1, 2, 0)
        assert np.abs(error).max() <= 6  # JPEG noise
        # An off-by-one crop or stride would bias rows or cols by 1 or 2 on average.
        assert np.all(np.abs(error.mean(axis=(0, 1))) < 0.5)
    assert len(data.load_celeba(tmp_path, limit=2)[0]) == 2


def test_celeba_rejects_wrong_size(tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "000001.jpg")
    with pytest.raises(DataError, match="000001.jpg"):
        data.load_celeba(tmp_path)


# ----------------------------------------------------------------------------- image folders


def test_image_folder_resizes_and_converts(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "a.png")
    Image.new("L", (10, 30), 128).save(tmp_path / "sub" / "b.jpg")
    Image.new("RGBA", (16, 16), (0, 0, 255, 255)).save(tmp_path / "c.PNG")
    (tmp_path / "notes.txt").write_text("not an image")

    rgb = data.load_image_folder(tmp_path, (8, 12, 3))
    assert rgb.shape == (3, 8, 12, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0], np.broadcast_to([255, 0, 0], (8, 12, 3)))
    assert np.all(np.abs(rgb[2].astype(int) - 128) <= 2)  # gray JPEG copied to 3 channels
    np.testing.assert_array_equal(rgb[1], np.broadcast_to([0, 0, 255], (8, 12, 3)))

    gray = data.load_image_folder(tmp_path, (8, 8, 1))
    assert gray.shape == (3, 8, 8, 1)
    assert gray[0, 0, 0, 0] == 76  # ITU-R 601 luma of pure red


def test_image_folder_center_crops_to_aspect(tmp_path):
    image = np.zeros((10, 30), np.uint8)
    image[:, 10:20] = 255  # only the middle third survives a square center crop
    Image.fromarray(image).save(tmp_path / "wide.png")
    (loaded,) = data.load_image_folder(tmp_path, (10, 10, 1))
    assert loaded.min() == 255


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_image_folder(tmp_path / "missing", (8, 8, 3))
    with pytest.raises(DataError, match="No PNG or JPEG"):
        data.load_image_folder(tmp_path, (8, 8, 3))
    Image.new("RGB", (8, 8)).save(tmp_path / "good.png")
    with pytest.raises(DataError, match="channels"):
        data.load_image_folder(tmp_path, (8, 8, 4))
    (tmp_path / "x.png").write_bytes(b"this is not a png at all")
    with pytest.raises(DataError, match="x.png"):
        data.load_image_folder(tmp_path, (8, 8, 3))


def test_truncated_image_is_an_error(tmp_path):
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "y.jpg")
    payload = (tmp_path / "y.jpg").read_bytes()
    (tmp_path / "y.jpg").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(DataError, match="y.jpg"):
        data.load_image_folder(tmp_path, (8, 8, 3))


# ----------------------------------------------------------------------------- arrays


def test_load_array_npy_three_dims_and_npz(tmp_path):
    images = np.arange(2 * 4 * 4).reshape(2, 4, 4).astype(np.int64)
    np.save(tmp_path / "a.npy", images)
    loaded = data.load_array(tmp_path / "a.npy", image_shape=(4, 4, 1))
    assert loaded.shape == (2, 4, 4, 1) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded[..., 0], images)

    np.savez(tmp_path / "b.npz", images=np.zeros((3, 4, 4, 3), np.uint8), labels=np.arange(3))
    assert data.load_array(tmp_path / "b.npz").shape == (3, 4, 4, 3)
    np.savez(tmp_path / "c.npz", x=np.zeros((3, 4, 4, 3), np.uint8))
    assert data.load_array(tmp_path / "c.npz").shape == (3, 4, 4, 3)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 4, 4, 1), np.float32), "convert them to uint8"),
        (np.full((2, 4, 4), 300), r"0\.\.255"),
        (np.zeros((2, 4), np.uint8), "shape"),
        (np.zeros((2, 4, 4, 3), np.uint8), r"expected \(4, 4, 1\)"),
    ],
)
def test_load_array_errors(tmp_path, array, message):
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(DataError, match=message):
        data.load_array(tmp_path / "a.npy", image_shape=(4, 4, 1))


def test_load_array_refuses_pickles(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="obj.npy"):
        data.load_array(tmp_path / "obj.npy")
    np.savez(tmp_path / "two.npz", a=np.zeros(1), b=np.zeros(1))
    with pytest.raises(DataError, match="'images'"):
        data.load_array(tmp_path / "two.npz")


# ----------------------------------------------------------------------------- dispatcher


def test_load_dataset_dispatch(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 4, 4, 3), np.uint8))
    images, labels = data.load_dataset(str(tmp_path / "a.npy"), "train")
    assert images.shape == (2, 4, 4, 3) and labels is None

    folder = tmp_path / "folder"
    folder.mkdir()
    Image.new("RGB", (20, 20)).save(folder / "a.png")
    images, labels = data.load_dataset(str(folder), "test", image_shape=(4, 4, 3))
    assert images.shape == (1, 4, 4, 3) and labels is None
    with pytest.raises(DataError, match="image_shape"):
        data.load_dataset(str(folder), "train")

    with pytest.raises(DataError, match="cifar10:"):
        data.load_dataset("mnist", "train")
    with pytest.raises(DataError, match="split"):
        data.load_dataset(str(folder), "validation", image_shape=(4, 4, 3))
    with pytest.raises(DataError, match=r"expected \(8, 8, 3\)"):
        data.load_dataset(str(tmp_path / "a.npy"), "train", image_shape=(8, 8, 3))


@needs_fashion_mnist
def test_load_dataset_fashion_mnist():
    images, labels = data.load_dataset("fashion_mnist", "test", image_shape=(28, 28, 1))
    assert images.shape == (10000, 28, 28, 1) and labels.shape == (10000,)


# ----------------------------------------------------------------------------- batching


def _toy_images(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1)


def test_batch_at_is_deterministic_and_seed_dependent():
    images = _toy_images(20)
    a = data.batch_at(images, 4, seed=1, step=7)
    np.testing.assert_array_equal(a, data.batch_at(images, 4, seed=1, step=7))
    assert a.shape == (4, 1, 1, 1) and a.dtype == np.uint8
    assert not np.array_equal(a, data.batch_at(images, 4, seed=2, step=7))


@pytest.mark.parametrize("start", [0, 1, 4, 5, 13])
def test_resumed_iteration_matches_uninterrupted(start):
    images = _toy_images(23)  # 5 batches of 4 per epoch, 3 images dropped
    full = data.iterate_batches(images, 4, seed=5)
    uninterrupted = [next(full) for _ in range(start + 12)][start:]
    resumed = data.iterate_batches(images, 4, seed=5, start_step=start)
    for step, expected in enumerate(uninterrupted, start):
        batch = next(resumed)
        np.testing.assert_array_equal(batch, expected)
        np.testing.assert_array_equal(batch, data.batch_at(images, 4, seed=5, step=step))


def test_each_epoch_is_a_permutation():
    images = _toy_images(24)
    batches = data.iterate_batches(images, 6, seed=0)
    epochs = [np.concatenate([next(batches) for _ in range(4)]).ravel() for _ in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(24))
    assert not np.array_equal(epochs[0], epochs[1])


def test_batch_size_larger_than_dataset_is_an_error():
    with pytest.raises(DataError, match="batch_size"):
        data.batch_at(_toy_images(3), 4, seed=0, step=0)


def test_sequential_batches_cover_everything_once():
    images = _toy_images(10)
    batches = list(data.sequential_batches(images, 4))
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(batches), images)


# ----------------------------------------------------------------------------- quantisation


@pytest.mark.parametrize("n_bits", [1, 3, 5, 8])
def test_quantize_and_to_uint8(n_bits):
    images = np.arange(256, dtype=np.uint8)
    values = data.quantize(images, n_bits)
    assert values.min() == 0 and values.max() == 2**n_bits - 1
    np.testing.assert_array_equal(values, images // 2 ** (8 - n_bits))
    shown = data.to_uint8(values, n_bits)
    assert shown.dtype == np.uint8 and shown.min() == 0 and shown.max() == 255
    np.testing.assert_array_equal(data.quantize(shown, n_bits), values)


def test_quantize_rejects_bad_input():
    with pytest.raises(DataError, match="n_bits"):
        data.quantize(np.zeros(3, np.uint8), 0)
    with pytest.raises(DataError, match="uint8"):
        data.quantize(np.zeros(3, np.float32), 3)
    with pytest.raises(DataError, match="0..7"):
        data.to_uint8(np.array([8]), 3)
