"""Image datasets for training and evaluating the zoo's flows, as plain numpy uint8 arrays.

Every loader returns ``(images, labels)`` with ``images`` a uint8 array of shape
``(N, H, W, C)`` and ``labels`` an int64 array of shape ``(N,)``, or ``None`` when the
source has no labels. Problems with the data raise :class:`DataError` naming the file and
the fix.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CELEBA_RAW_SIZE = (178, 218)  # (width, height) of an img_align_celeba JPEG
CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32
PAPER_FRACTIONS = (0.6, 0.2, 0.2)  # train, test, val in the authors' order
SPLITS = ("train", "test", "paper_train", "paper_val", "paper_test")

PathLike = str | os.PathLike
Labels = np.ndarray | None
Dataset = tuple[np.ndarray, Labels]


class DataError(ValueError):
    """A dataset is missing, malformed, or of the wrong shape or dtype."""


# --------------------------------------------------------------------------------------
# Fashion-MNIST (IDX files)
# --------------------------------------------------------------------------------------

_IDX_UBYTE = 0x08
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_fashion_mnist(split: str = "train", root: PathLike | None = None) -> Dataset:
    """Load the standard Fashion-MNIST ``split`` ("train": 60000, "test": 10000) as (N,28,28,1).

    ``root`` holds the four IDX files, gzip'ed or not; it defaults to the directory of the
    Debian package ``dataset-fashion-mnist``.
    """
    if split not in _FASHION_MNIST_FILES:
        raise DataError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}.")
    root = Path(root) if root is not None else FASHION_MNIST_ROOT
    if not root.is_dir():
        raise DataError(
            f"Fashion-MNIST directory {root} does not exist; install it with "
            "`apt-get install -y dataset-fashion-mnist` or pass root= to its location."
        )
    images_name, labels_name = _FASHION_MNIST_FILES[split]
    images = read_idx(_find_idx_file(root, images_name), expected_ndim=3)
    labels = read_idx(_find_idx_file(root, labels_name), expected_ndim=1)
    if len(images) != len(labels):
        raise DataError(
            f"Fashion-MNIST {split} in {root} has {len(images)} images but {len(labels)} "
            "labels; re-install or re-download the files."
        )
    return images[..., None], labels.astype(np.int64)


def _find_idx_file(root: Path, name: str) -> Path:
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"{root / name}.gz (or un-gzipped {name}) not found; put it in {root}.")


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read a uint8 IDX file (gzip'ed if its name ends in .gz), validating header and size."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"Could not read {path} ({e}); re-download it.") from e
    header_bytes = 4 + 4 * expected_ndim
    if len(raw) < header_bytes:
        raise DataError(f"{path} is truncated (only {len(raw)} bytes); re-download it.")
    magic = int.from_bytes(raw[:4], "big")
    expected_magic = (_IDX_UBYTE << 8) | expected_ndim
    if magic != expected_magic:
        raise DataError(
            f"{path} has IDX magic number {magic:#010x}, expected {expected_magic:#010x} "
            f"(uint8, {expected_ndim} dims); is it the right file?"
        )
    dims = np.frombuffer(raw, dtype=">u4", count=expected_ndim, offset=4).astype(np.int64)
    expected_bytes = header_bytes + int(np.prod(dims))
    if len(raw) != expected_bytes:
        raise DataError(
            f"{path} has {len(raw)} bytes but its header {tuple(dims)} implies "
            f"{expected_bytes}; re-download it."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_bytes).reshape(tuple(dims))


# --------------------------------------------------------------------------------------
# The paper's train/val/test re-split
# --------------------------------------------------------------------------------------


def paper_split(images: np.ndarray, labels: Labels, seed: int | None = None) -> dict[str, Dataset]:
    """Re-split a dataset 60/20/20 into ``{"train", "val", "test"}`` as the paper's authors did.

    The authors concatenated the standard train and test sets (pass them concatenated, in that
    order) and, for Fashion-MNIST and CIFAR-10, cut the result without shuffling: the first 60%
    is train, the next 20% test and the last 20% validation. ``seed=None`` reproduces exactly
    that; an integer seed shuffles deterministically before cutting. The zoo's loaders default
    to the standard split; this one is only used when asked for.
    """
    n = len(images)
    if labels is not None and len(labels) != n:
        raise DataError(
            f"paper_split got {n} images but {len(labels)} labels; pass matching arrays."
        )
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    n_train = int(n * PAPER_FRACTIONS[0])
    n_test = int(n * PAPER_FRACTIONS[1])
    parts = {
        "train": order[:n_train],
        "test": order[n_train : n_train + n_test],
        "val": order[n_train + n_test :],
    }
    return {
        name: (images[idx], None if labels is None else labels[idx]) for name, idx in parts.items()
    }


def _select_split(train: Dataset, test: Dataset, split: str) -> Dataset:
    """Pick a standard split, or a paper split built from train+test."""
    if split == "train":
        return train
    if split == "test":
        return test
    if split in ("paper_train", "paper_val", "paper_test"):
        images = np.concatenate([train[0], test[0]])
        labels = np.concatenate([train[1], test[1]])
        return paper_split(images, labels)[split.removeprefix("paper_")]
    raise DataError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")


# --------------------------------------------------------------------------------------
# CIFAR-10 (binary version)
# --------------------------------------------------------------------------------------


def load_cifar10(root: PathLike, split: str = "train") -> Dataset:
    """Load CIFAR-10 from its binary version (``*.bin`` files) as (N,32,32,3).

    ``root`` is the ``cifar-10-batches-bin`` directory or its parent. ``split`` is "train"
    (data_batch_1..5, 50000 images), "test" (test_batch, 10000) or a ``paper_*`` split.
    """
    if split not in SPLITS:
        raise DataError(f"Unknown CIFAR-10 split {split!r}; use one of {', '.join(SPLITS)}.")
    directory = _cifar10_directory(Path(root))
    if split in ("train", "test"):
        return _read_cifar10_files(directory, split)
    train = _read_cifar10_files(directory, "train")
    test = _read_cifar10_files(directory, "test")
    return _select_split(train, test, split)


def _cifar10_directory(root: Path) -> Path:
    nested = root / "cifar-10-batches-bin"
    if nested.is_dir():
        return nested
    if root.is_dir():
        return root
    raise DataError(
        f"CIFAR-10 directory {root} does not exist; pass the extracted binary version "
        "(cifar-10-binary.tar.gz) directory."
    )


def _read_cifar10_files(directory: Path, split: str) -> Dataset:
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    parts = [read_cifar10_batch(directory / name) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_cifar10_batch(path: Path) -> Dataset:
    """Read one CIFAR-10 binary file: records of 1 label byte then 3072 bytes of CHW pixels."""
    if not path.is_file():
        raise DataError(f"CIFAR-10 file {path} not found; use the binary version of CIFAR-10.")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR10_RECORD_BYTES:
        raise DataError(
            f"{path} has {raw.size} bytes, not a positive multiple of {CIFAR10_RECORD_BYTES}; "
            "is it the binary (not python) version of CIFAR-10?"
        )
    records = raw.reshape(-1, CIFAR10_RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path} has labels above 9; is it a CIFAR-10 binary file?")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


# --------------------------------------------------------------------------------------
# Image files: CelebA and arbitrary folders
# --------------------------------------------------------------------------------------


def load_celeba(root: PathLike, limit: int | None = None) -> Dataset:
    """Load aligned CelebA JPEGs (178x218) with the paper's preprocessing, as (N,64,64,3).

    Each image keeps every 2nd pixel (109x89) and is cropped to rows 26:-19, cols 12:-13.
    Files are read in sorted name order, the first ``limit`` of them if given.
    """
    paths = _image_files(Path(root))
    if limit is not None:
        paths = paths[:limit]
    images = np.empty((len(paths), 64, 64, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        image = _open_image(path, "RGB")
        if image.size != CELEBA_RAW_SIZE:
            raise DataError(
                f"{path} is {image.size[0]}x{image.size[1]}, but CelebA aligned images are "
                "178x218; use the img_align_celeba folder or load_image_folder instead."
            )
        images[i] = np.asarray(image)[::2, ::2][26:-19, 12:-13]
    return images, None


def load_image_folder(path: PathLike, image_shape: tuple[int, int, int]) -> np.ndarray:
    """Load every PNG/JPEG under ``path`` (recursively, sorted) as (N,H,W,C) uint8.

    Each image is converted to C channels (1: grayscale, 3: RGB), center-cropped to the
    target aspect ratio and resized to (H, W).
    """
    height, width, channels = _check_image_shape(image_shape)
    mode = {1: "L", 3: "RGB"}[channels]
    paths = _image_files(Path(path))
    images = np.empty((len(paths), height, width, channels), dtype=np.uint8)
    for i, file in enumerate(paths):
        image = _open_image(file, mode)
        fitted = ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS)
        images[i] = np.asarray(fitted).reshape(height, width, channels)
    return images


def _check_image_shape(image_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise DataError(f"image_shape must be (H, W, C) with positive sizes, got {image_shape}.")
    if image_shape[2] not in (1, 3):
        raise DataError(
            f"image_shape {tuple(image_shape)} has {image_shape[2]} channels; "
            "only 1 (grayscale) or 3 (RGB) are supported."
        )
    return tuple(int(s) for s in image_shape)


def _image_files(directory: Path) -> list[Path]:
    """All PNG/JPEG files under ``directory``, sorted; errors if there are none."""
    if not directory.exists():
        raise DataError(f"Image directory {directory} does not exist; check the path.")
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory of images; pass a folder.")
    paths = sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        raise DataError(
            f"No PNG or JPEG images found under {directory}; check the path or file extensions."
        )
    return paths


def _open_image(path: Path, mode: str) -> Image.Image:
    """Decode an image fully (so corrupt files fail here) and convert it to ``mode``."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert(mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"Could not read image {path} ({e}); fix or remove the file.") from e


# --------------------------------------------------------------------------------------
# Arrays (.npy / .npz)
# --------------------------------------------------------------------------------------


def load_array(path: PathLike, image_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Load images from a ``.npy`` or ``.npz`` file as (N,H,W,C) uint8.

    An ``.npz`` must hold an ``images`` array or exactly one array. (N,H,W) arrays are read
    as one channel; integer arrays must lie in 0..255. Pickled objects are never loaded.
    """
    path = Path(path)
    array = _read_array_file(path)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise DataError(
            f"{path} holds an array of shape {array.shape}; expected (N, H, W) or (N, H, W, C)."
        )
    images = _as_uint8(array, path)
    if image_shape is not None and images.shape[1:] != tuple(image_shape):
        raise DataError(
            f"{path} holds images of shape {images.shape[1:]}, expected {tuple(image_shape)}; "
            "resize them or change image_shape."
        )
    return images


def _read_array_file(path: Path) -> np.ndarray:
    if path.suffix not in (".npy", ".npz"):
        raise DataError(f"{path} is not a .npy or .npz file.")
    if not path.is_file():
        raise DataError(f"Array file {path} does not exist; check the path.")
    try:
        with open(path, "rb") as f:
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return loaded
            with loaded:
                key = _npz_key(loaded.files, path)
                return loaded[key]
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise DataError(
            f"Could not read {path} ({e}); save it with np.save/np.savez, without object arrays."
        ) from e


def _npz_key(keys: list[str], path: Path) -> str:
    if "images" in keys:
        return "images"
    if len(keys) == 1:
        return keys[0]
    raise DataError(f"{path} holds arrays {keys}; name the image array 'images'.")


def _as_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(
            f"{path} holds {array.dtype} images; convert them to uint8 in 0..255 "
            "(e.g. np.round(x * 255).astype(np.uint8) for floats in [0, 1])."
        )
    if array.size and (array.min() < 0 or array.max() > 255):
        raise DataError(
            f"{path} holds integers in {array.min()}..{array.max()}; images must be in 0..255."
        )
    return array.astype(np.uint8)


# --------------------------------------------------------------------------------------
# Dispatcher
# --------------------------------------------------------------------------------------

SPEC_FORMS = (
    "'fmnist' or 'fashion_mnist'",
    "'cifar10:/path/to/cifar-10-batches-bin'",
    "'celeba:/path/to/img_align_celeba'",
    "a path to a .npy/.npz file",
    "a path to a folder of PNG/JPEG images",
)


def load_dataset(
    spec: str, split: str = "train", image_shape: tuple[int, int, int] | None = None
) -> Dataset:
    """Load a dataset described by ``spec`` (see ``SPEC_FORMS``) as ``(images, labels)``.

    ``split`` picks the standard "train"/"test" split (or a ``paper_*`` re-split, see
    :func:`paper_split`) of Fashion-MNIST and CIFAR-10; CelebA, arrays and folders are a single
    set and return all their images whatever the split. ``image_shape`` is the resize target
    for folders (required there) and is checked against the result for the other sources.
    """
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    kind, _, location = spec.partition(":")
    if kind in ("fmnist", "fashion_mnist") and not location:
        images, labels = _fashion_mnist_split(split)
    elif kind == "cifar10" and location:
        images, labels = load_cifar10(location, split)
    elif kind == "celeba" and location:
        images, labels = load_celeba(location)
    else:
        images, labels = _load_path(Path(spec), image_shape)
    if image_shape is not None and images.shape[1:] != tuple(image_shape):
        raise DataError(
            f"Dataset {spec!r} has images of shape {images.shape[1:]}, expected "
            f"{tuple(image_shape)}; change image_shape or the dataset."
        )
    return images, labels


def _fashion_mnist_split(split: str) -> Dataset:
    if split in ("train", "test"):
        return load_fashion_mnist(split)
    return _select_split(load_fashion_mnist("train"), load_fashion_mnist("test"), split)


def _load_path(path: Path, image_shape: tuple[int, int, int] | None) -> Dataset:
    if path.suffix in (".npy", ".npz"):
        return load_array(path, image_shape), None
    if path.is_dir():
        if image_shape is None:
            raise DataError(f"Loading the image folder {path} needs image_shape=(H, W, C).")
        return load_image_folder(path, image_shape), None
    raise DataError(
        f"Dataset spec {str(path)!r} is neither a known dataset nor an existing .npy/.npz file "
        f"or folder; use one of: {'; '.join(SPEC_FORMS)}."
    )


# --------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Full batches per epoch; the remainder of each epoch's permutation is dropped."""
    if not 0 < batch_size <= num_images:
        raise DataError(
            f"batch_size must be in 1..{num_images} (the dataset size), got {batch_size}."
        )
    return num_images // batch_size


def epoch_permutation(num_images: int, seed: int, epoch: int) -> np.ndarray:
    """Return the image order of ``epoch``; it depends on (seed, epoch) only, so runs resume."""
    return np.random.default_rng([seed, epoch]).permutation(num_images)


def batch_at(images: np.ndarray, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Return the training batch of global ``step``, a slice of its epoch's permutation."""
    per_epoch = steps_per_epoch(len(images), batch_size)
    epoch, index = divmod(step, per_epoch)
    order = epoch_permutation(len(images), seed, epoch)
    return images[order[index * batch_size : (index + 1) * batch_size]]


def iterate_batches(
    images: np.ndarray, batch_size: int, seed: int, start_step: int = 0
) -> Iterator[np.ndarray]:
    """Yield ``batch_at(images, batch_size, seed, step)`` for step = start_step, ... forever."""
    per_epoch = steps_per_epoch(len(images), batch_size)
    step = start_step
    while True:
        epoch, index = divmod(step, per_epoch)
        order = epoch_permutation(len(images), seed, epoch)
        for i in range(index, per_epoch):
            yield images[order[i * batch_size : (i + 1) * batch_size]]
        step = (epoch + 1) * per_epoch


def sequential_batches(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Yield every image once, in order, for evaluation; the last batch may be smaller."""
    if batch_size < 1:
        raise DataError(f"batch_size must be positive, got {batch_size}.")
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]


# --------------------------------------------------------------------------------------
# Quantisation
# --------------------------------------------------------------------------------------


def _check_n_bits(n_bits: int) -> None:
    if not 1 <= n_bits <= 8:
        raise DataError(f"n_bits must be in 1..8, got {n_bits}.")


def quantize(images: np.ndarray, n_bits: int) -> np.ndarray:
    """Keep the top ``n_bits`` of each uint8 pixel: values in 0..2**n_bits - 1 (uint8)."""
    _check_n_bits(n_bits)
    if images.dtype != np.uint8:
        raise DataError(f"quantize expects uint8 images, got {images.dtype}.")
    return images >> (8 - n_bits)


def to_uint8(values: np.ndarray, n_bits: int) -> np.ndarray:
    """Map quantised values 0..2**n_bits - 1 back onto 0..255 for display."""
    _check_n_bits(n_bits)
    top = 2**n_bits - 1
    values = np.asarray(values)
    if values.size and (values.min() < 0 or values.max() > top):
        raise DataError(f"to_uint8 expects values in 0..{top} for n_bits={n_bits}.")
    return (values.astype(np.int32) * 255 // top).astype(np.uint8)
