import numpy as np
import pytest

from nif_zoo.probe import linear_probe


def gaussian_clusters(n: int, dim: int, classes: int, spread: float, seed: int):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * spread
    labels = rng.integers(0, classes, n)
    return centers[labels] + rng.normal(size=(n, dim)), labels


def test_separable_classes_are_probed_perfectly():
    x, y = gaussian_clusters(1200, 12, 4, spread=8.0, seed=0)
    assert linear_probe(x[:800], y[:800], x[800:], y[800:]) >= 0.99


def test_random_labels_give_chance_accuracy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 10))
    y = rng.integers(0, 4, 2000)
    accuracy = linear_probe(x[:1000], y[:1000], x[1000:], y[1000:])
    assert abs(accuracy - 0.25) < 0.06


def test_probe_is_deterministic_and_ignores_constant_features():
    x, y = gaussian_clusters(600, 6, 3, spread=2.0, seed=2)
    x = np.concatenate([x, np.ones((600, 1))], axis=1)
    first = linear_probe(x[:400], y[:400], x[400:], y[400:], l2=1e-3)
    assert np.isfinite(first)
    assert linear_probe(x[:400], y[:400], x[400:], y[400:], l2=1e-3) == first


def test_probe_rejects_mismatched_inputs():
    x, y = gaussian_clusters(50, 3, 2, spread=2.0, seed=3)
    with pytest.raises(ValueError):
        linear_probe(x, y[:-1], x, y)
    with pytest.raises(ValueError):
        linear_probe(x, y, x[:, :2], y)
