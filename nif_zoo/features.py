"""FD in a Fashion-MNIST classifier's features: the zoo's sample-quality metric.

No Inception weights can be fetched here, so instead of Inception FID the zoo reports the
Frechet distance between Gaussians fitted to the 256 penultimate-layer activations of a small
CNN trained on Fashion-MNIST. Its numbers are comparable only with other numbers computed with
the same shipped classifier (``zoo/fmnist-classifier/``), never with published FIDs.

The flows model n-bit images, so the classifier sees every image quantised to its ``n_bits``
and mapped back onto 0..255 (``(v * 255) // (2**n - 1)`` with ``v = pixel >> (8 - n)``): real
and generated images are compared in the same space. The mapping is idempotent, so images a
flow already produced at that bit depth pass through unchanged.

Train and ship the classifier with ``python -m nif_zoo.features --out zoo/fmnist-classifier``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from nif_zoo import data, hub

ARCHITECTURE = "fmnist-cnn-v1"
ARCHITECTURE_SUMMARY = ("conv3x3-32, maxpool2, conv3x3-64, maxpool2, conv3x3-128, maxpool2, "
                        "dense256 (features), dense10; ReLU")
FEATURE_DIM = 256
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)
FORMAT_VERSION = 1
CONFIG_FILE, CHECKSUM_FILE, CHECKPOINT_DIR = "config.json", "files.json", "checkpoint"
DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "zoo" / "fmnist-classifier"

Params = Any


class FashionClassifier(nn.Module):
    """A small CNN; returns ``(logits, features)`` with the 256 penultimate activations."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = nn.relu(nn.Conv(32, (3, 3))(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(64, (3, 3))(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(128, (3, 3))(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        feats = nn.relu(nn.Dense(FEATURE_DIM)(x))
        return nn.Dense(NUM_CLASSES)(feats), feats


def quantise_images(images: np.ndarray, n_bits: int) -> np.ndarray:
    """uint8 images on the n-bit grid, mapped back onto 0..255 (idempotent)."""
    return data.to_uint8(data.quantize(np.asarray(images), n_bits), n_bits)


def _inputs(images: jax.Array) -> jax.Array:
    return jnp.asarray(images, jnp.float32) / 255.0


def init_params(seed: int = 0) -> Params:
    """Fresh (untrained) classifier parameters."""
    dummy = jnp.zeros((1, *IMAGE_SHAPE), jnp.float32)
    return FashionClassifier().init(jax.random.key(seed), dummy)["params"]


@jax.jit
def _apply(params: Params, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    return FashionClassifier().apply({"params": params}, _inputs(images))


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"the classifier takes uint8 images (0..255), got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"the classifier takes images of shape (N, 28, 28, 1), "
                         f"got {images.shape}")
    return images


def _batched_apply(params: Params, images: np.ndarray, n_bits: int,
                   batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    images = quantise_images(_check_images(images), n_bits)
    logits, feats = [], []
    for batch in data.sequential_batches(images, batch_size):
        size = len(batch)
        if size < batch_size:  # pad so every call reuses the one compiled batch shape
            batch = np.concatenate([batch, np.zeros((batch_size - size, *IMAGE_SHAPE), np.uint8)])
        batch_logits, batch_feats = _apply(params, batch)
        logits.append(np.asarray(batch_logits[:size]))
        feats.append(np.asarray(batch_feats[:size]))
    if not logits:
        return np.zeros((0, NUM_CLASSES), np.float32), np.zeros((0, FEATURE_DIM), np.float32)
    return np.concatenate(logits), np.concatenate(feats)


def features(params: Params, images: np.ndarray, batch_size: int = 500,
             n_bits: int = 3) -> np.ndarray:
    """Return the (N, 256) penultimate activations of uint8 images quantised to ``n_bits``.

    Pass the ``n_bits`` the classifier was trained with (``meta["n_bits"]`` of
    :func:`load_classifier`); the shipped classifier and the flows are 3-bit.
    """
    return _batched_apply(params, images, n_bits, batch_size)[1]


def predict(params: Params, images: np.ndarray, batch_size: int = 500,
            n_bits: int = 3) -> np.ndarray:
    """Predicted class (0..9) of each uint8 image, quantised to ``n_bits`` first."""
    return _batched_apply(params, images, n_bits, batch_size)[0].argmax(axis=-1)


def accuracy(params: Params, images: np.ndarray, labels: np.ndarray, n_bits: int = 3) -> float:
    return float(np.mean(predict(params, images, n_bits=n_bits) == np.asarray(labels)))


# --------------------------------------------------------------------------------------
# Frechet distance
# --------------------------------------------------------------------------------------


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets.

    ``|mu_a - mu_b|^2 + tr(C_a) + tr(C_b) - 2 tr((C_a C_b)^{1/2})``. The trace of the matrix
    square root is computed without ``scipy.linalg.sqrtm``: ``C_a C_b`` is similar to the
    symmetric PSD matrix ``M = C_a^{1/2} C_b C_a^{1/2}``, so ``tr((C_a C_b)^{1/2})`` is the sum
    of the square roots of M's eigenvalues. Both square roots come from ``eigh`` of symmetric
    matrices, so no complex parts arise; round-off eigenvalues below zero are clipped to zero.
    Computed in float64; covariances use ``N - 1`` (``np.cov``).
    """
    a, b = _as_feature_matrix(feats_a, "feats_a"), _as_feature_matrix(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _psd_sqrt(cov_a)
    eigenvalues = np.linalg.eigvalsh(_symmetrise(root_a @ cov_b @ root_a))
    trace_root = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    distance = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                     - 2.0 * trace_root)
    if not np.isfinite(distance):
        raise FloatingPointError("the Frechet distance is not finite; check the features")
    return max(distance, 0.0)  # exact zero for identical sets despite round-off


def _as_feature_matrix(feats: np.ndarray, name: str) -> np.ndarray:
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f"{name} must be (N, D) with N >= 2, got shape {feats.shape}")
    if not np.all(np.isfinite(feats)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return feats


def _symmetrise(matrix: np.ndarray) -> np.ndarray:
    return (matrix + matrix.T) / 2.0


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, vectors = np.linalg.eigh(_symmetrise(matrix))
    return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def _train_step_fn(optimizer: optax.GradientTransformation):
    def loss_fn(params, images, labels):
        logits, _ = FashionClassifier().apply({"params": params}, _inputs(images))
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def step(params, opt_state, images, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def train_classifier(n_bits: int = 3, steps: int = 1875, seed: int = 0, batch_size: int = 128,
                     learning_rate: float = 2e-3, log_every: int = 200) -> tuple[Params, float]:
    """Train on the Fashion-MNIST train split quantised to ``n_bits``; returns (params, test acc).

    Adam with a cosine-decayed learning rate; ``steps=1875`` at batch 128 is 4 epochs.
    The accuracy is measured on the full test split, quantised the same way.
    """
    train_images, train_labels = data.load_fashion_mnist("train")
    test_images, test_labels = data.load_fashion_mnist("test")
    train_images = quantise_images(train_images, n_bits)
    schedule = optax.cosine_decay_schedule(learning_rate, steps)
    optimizer = optax.adam(schedule)
    params = init_params(seed)
    opt_state = optimizer.init(params)
    step_fn = _train_step_fn(optimizer)
    per_epoch = data.steps_per_epoch(len(train_images), batch_size)
    for step in range(steps):
        epoch, index = divmod(step, per_epoch)
        order = data.epoch_permutation(len(train_images), seed, epoch)
        batch = order[index * batch_size:(index + 1) * batch_size]
        params, opt_state, loss = step_fn(params, opt_state, train_images[batch],
                                          train_labels[batch])
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps}  loss {float(loss):.4f}", flush=True)
    return params, accuracy(params, test_images, test_labels, n_bits)


# --------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------


def save_classifier(folder: str | os.PathLike, params: Params, meta: dict) -> Path:
    """Write the classifier folder atomically: a complete folder or none.

    It holds ``config.json`` (``meta`` plus format and architecture), ``checkpoint/`` (Orbax)
    and ``files.json`` (size and sha256 of every other file).
    """
    if "n_bits" not in meta:
        raise ValueError("meta must record the n_bits the classifier was trained with")
    folder = Path(folder).resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        config = {**meta, "format_version": FORMAT_VERSION, "architecture": ARCHITECTURE,
                  "architecture_summary": ARCHITECTURE_SUMMARY, "feature_dim": FEATURE_DIM,
                  "metric": "FD in a Fashion-MNIST classifier's features (not Inception FID)"}
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(staging / CHECKPOINT_DIR, jax.device_get(params))
        checkpointer.wait_until_finished()
        records = hub.describe_folder(staging)
        (staging / CHECKSUM_FILE).write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
        _replace_folder(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def _replace_folder(staging: Path, folder: Path) -> None:
    if not folder.exists():
        os.replace(staging, folder)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
    os.replace(folder, old / "previous")
    os.replace(staging, folder)
    shutil.rmtree(old)


def load_classifier(folder: str | os.PathLike = DEFAULT_FOLDER) -> tuple[Params, dict]:
    """``(params, meta)`` from a folder written by :func:`save_classifier`, checksums verified.

    Raises ``hub.ChecksumError`` / ``hub.PartialDownloadError`` for altered or missing files.
    """
    folder = Path(folder)
    checksums = folder / CHECKSUM_FILE
    if not checksums.is_file():
        raise FileNotFoundError(f"{folder} has no {CHECKSUM_FILE}: not a classifier folder")
    hub.verify_folder(folder, json.loads(checksums.read_text()))
    meta = json.loads((folder / CONFIG_FILE).read_text())
    if meta.get("format_version") != FORMAT_VERSION or meta.get("architecture") != ARCHITECTURE:
        raise ValueError(f"{folder} holds a {meta.get('architecture')!r} classifier of format "
                         f"{meta.get('format_version')}; this nif_zoo reads {ARCHITECTURE!r} "
                         f"format {FORMAT_VERSION}")
    target = jax.eval_shape(init_params)
    params = ocp.StandardCheckpointer().restore((folder / CHECKPOINT_DIR).resolve(), target)
    return params, meta


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nif_zoo.features",
        description="Train the Fashion-MNIST feature classifier and save it.")
    parser.add_argument("--out", required=True, help="folder to write the classifier to")
    parser.add_argument("--n-bits", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1875)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    params, test_accuracy = train_classifier(args.n_bits, args.steps, args.seed)
    seconds = time.perf_counter() - start
    command = "python -m nif_zoo.features " + " ".join(
        sys.argv[1:] if argv is None else argv)
    meta = {"n_bits": args.n_bits, "steps": args.steps, "seed": args.seed, "batch_size": 128,
            "optimizer": "adam, learning rate 2e-3 cosine-decayed to 0 over the steps",
            "test_accuracy": round(test_accuracy, 4),
            "test_set": f"Fashion-MNIST test split (10000 images), {args.n_bits}-bit quantised",
            "training_seconds": round(seconds, 1), "training_command": command,
            "jax_version": jax.__version__}
    folder = save_classifier(args.out, params, meta)
    print(f"test accuracy {test_accuracy:.4f} after {seconds:.0f} s; saved to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
