import json

import numpy as np
import pytest
import scipy.linalg

from nif_zoo import data, features, hub


def closed_form_fd(mu_a, cov_a, mu_b, cov_b) -> float:
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def random_cov(rng, dim: int) -> np.ndarray:
    m = rng.normal(size=(dim, dim))
    return m @ m.T / dim + 0.1 * np.eye(dim)


def test_frechet_distance_is_zero_for_identical_sets():
    feats = np.random.default_rng(0).normal(size=(500, 16))
    assert features.frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    rng = np.random.default_rng(1)
    dim = 4
    mu_a, mu_b = rng.normal(size=dim), rng.normal(size=dim)
    cov_a, cov_b = random_cov(rng, dim), random_cov(rng, dim)
    a = rng.multivariate_normal(mu_a, cov_a, size=200_000)
    b = rng.multivariate_normal(mu_b, cov_b, size=200_000)
    expected = closed_form_fd(mu_a, cov_a, mu_b, cov_b)
    assert features.frechet_distance(a, b) == pytest.approx(expected, rel=0.03)
    # On the sample statistics themselves it equals the scipy.linalg.sqrtm formula.
    sample = closed_form_fd(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert features.frechet_distance(a, b) == pytest.approx(sample, rel=1e-8)


def test_frechet_distance_is_symmetric():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 8))
    b = rng.normal(size=(400, 8)) * 1.5 + 0.3
    assert features.frechet_distance(a, b) == pytest.approx(features.frechet_distance(b, a),
                                                            rel=1e-9)


def test_frechet_distance_rejects_bad_inputs():
    with pytest.raises(ValueError):
        features.frechet_distance(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError):
        features.frechet_distance(np.full((10, 3), np.nan), np.zeros((10, 3)))


def test_quantise_images_is_three_bit_and_idempotent():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    once = features.quantise_images(pixels, 3)
    assert sorted(np.unique(once)) == [(v * 255) // 7 for v in range(8)]
    np.testing.assert_array_equal(features.quantise_images(once, 3), once)


def random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)


@pytest.fixture(scope="module")
def untrained():
    return features.init_params(0)


def test_features_of_an_untrained_classifier_have_the_right_shape(untrained):
    feats = features.features(untrained, random_images(7), batch_size=4)
    assert feats.shape == (7, features.FEATURE_DIM)
    assert np.all(np.isfinite(feats))
    # Batching (with padding of the last batch) does not change the result.
    np.testing.assert_allclose(feats, features.features(untrained, random_images(7)), atol=1e-5)


def test_features_reject_float_images(untrained):
    with pytest.raises(TypeError):
        features.features(untrained, random_images(2).astype(np.float32))


def test_save_load_round_trip_gives_identical_features(untrained, tmp_path):
    folder = features.save_classifier(tmp_path / "clf", untrained, {"n_bits": 3})
    params, meta = features.load_classifier(folder)
    assert meta["n_bits"] == 3 and meta["architecture"] == features.ARCHITECTURE
    images = random_images(5, seed=1)
    np.testing.assert_array_equal(features.features(params, images),
                                  features.features(untrained, images))
    assert "files.json" not in json.loads((folder / "files.json").read_text())


def test_a_flipped_checkpoint_byte_is_caught(untrained, tmp_path):
    folder = features.save_classifier(tmp_path / "clf", untrained, {"n_bits": 3})
    largest = max((p for p in (folder / "checkpoint").rglob("*") if p.is_file()),
                  key=lambda p: p.stat().st_size)
    raw = bytearray(largest.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    largest.write_bytes(bytes(raw))
    with pytest.raises(hub.ChecksumError):
        features.load_classifier(folder)


def test_the_shipped_classifier_is_accurate():
    params, meta = features.load_classifier(features.DEFAULT_FOLDER)
    assert meta["test_accuracy"] >= 0.9
    assert meta["n_bits"] == 3
    try:
        images, labels = data.load_fashion_mnist("test")
    except data.DataError as error:
        pytest.skip(str(error))
    accuracy = features.accuracy(params, images[:500], labels[:500], n_bits=meta["n_bits"])
    assert accuracy >= 0.88
