"""``nif-zoo bench``: the figures a model card reports, measured in one command.

Test bits/dim at s = 1 (mean and standard error over dequantisation draws); Frechet distance
in a Fashion-MNIST classifier's features (FD, not Inception FID) at t = 1, with ``s`` chosen on a
held-out slice of the training set and reported on the test set; linear-probe accuracy on the
model's latent beside the same probe on pixels; the time taken.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from nif_zoo import data as datasets
from nif_zoo import evaluate
from nif_zoo.features import features, frechet_distance, load_classifier
from nif_zoo.pretrained import Pretrained
from nif_zoo.probe import linear_probe
from nif_zoo.train import write_json_atomic

CLASSIFIER_DIR = Path(__file__).resolve().parents[1] / "zoo" / "fmnist-classifier"
HELD_OUT = 10_000  # the last images of the training set, for choosing s


def _fd_at(model, classifier, reference, n, t, s, seed):
    fake = evaluate.samples(model, n, t=t, s=s, seed=seed)
    return float(frechet_distance(classifier(fake), reference))


def run(model: Pretrained, name: str, draws: int = 4, fd_samples: int = 10_000,
        test_limit: int | None = None, probe_train: int | None = None,
        s_grid=None, seed: int = 0, classifier_dir: Path = CLASSIFIER_DIR) -> dict:
    """All benchmark figures for a Fashion-MNIST model, as a JSON-ready dict."""
    started = time.time()
    test, test_labels = datasets.load_fashion_mnist("test")
    train, train_labels = datasets.load_fashion_mnist("train")
    if test_limit:
        test, test_labels = test[:test_limit], test_labels[:test_limit]
    result = {"name": name, "architecture": model.config.to_dict(), "seed": seed,
              "data": "Fashion-MNIST standard split, quantised to "
                      f"{model.config.n_bits} bits", "machine": machine()}
    result["bits_per_dim"] = evaluate.bits_per_dim(model, test, draws, seed)

    classifier_params, meta = load_classifier(classifier_dir)

    def classifier(images):
        return features(classifier_params, images, n_bits=meta["n_bits"])

    result["fd_feature_net"] = {"folder": f"zoo/{classifier_dir.name}", **meta}
    test_feats = classifier(test)
    held_out_feats = classifier(train[-HELD_OUT:])
    fd = {"samples": fd_samples, "t": 1.0}
    if model.config.head == "normal":
        fd["test_at_s1"] = _fd_at(model, classifier, test_feats, fd_samples, 1.0, 1.0, seed + 1)
    else:
        s_grid = list(s_grid or evaluate.s_values())
        fd["held_out_by_s"] = {f"{s:g}": _fd_at(model, classifier, held_out_feats, fd_samples,
                                                 1.0, s, seed + 1) for s in s_grid}
        best = min(fd["held_out_by_s"], key=fd["held_out_by_s"].get)
        fd["best_s"] = float(best)
        fd["test_at_best_s"] = _fd_at(model, classifier, test_feats, fd_samples, 1.0, float(best),
                                      seed + 2)
        fd["test_at_s1"] = _fd_at(model, classifier, test_feats, fd_samples, 1.0, 1.0, seed + 2)
    result["frechet_distance"] = fd

    probe_n = probe_train or len(train)
    latent_train = evaluate.encode_all(model, train[:probe_n])
    latent_test = evaluate.encode_all(model, test)
    result["linear_probe"] = {
        "latent_dim": int(latent_train.shape[1]),
        "latent_accuracy": linear_probe(latent_train, train_labels[:probe_n], latent_test,
                                        test_labels),
        "pixel_accuracy": linear_probe(_pixels(train[:probe_n]), train_labels[:probe_n],
                                       _pixels(test), test_labels),
        "train_images": probe_n, "test_images": int(len(test))}
    result["seconds"] = round(time.time() - started, 1)
    return result


def _pixels(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def machine() -> str:
    """The processor, core count and JAX backend, for the record."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {jax.default_backend()}"


def write(result: dict, path: str | Path) -> Path:
    """Writes the figures as JSON atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    return path
