"""The two datasets of the hyperbolic VAEs, as flat float32 rows with labels.

Fashion-MNIST is treated as the authors treated MNIST: pixels in [0, 1], binarised afresh at every
training step (each pixel is 1 with its grey level as probability) and once, at 0.5, for testing.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from nif_zoo import data as image_data
from nif_zoo.hyperbolic import branching_diffusion

FMNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                  "Sneaker", "Bag", "Ankle boot")


def load(dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, labels)``: bdp (labels: tree depth) or fmnist (labels: class; test binarised)."""
    if dataset == "bdp":
        return branching_diffusion.load(split)
    if dataset == "fmnist":
        images, labels = image_data.load_dataset("fmnist", split)
        rows = images.reshape(len(images), -1).astype(np.float32) / 255.0
        return (binarise(rows) if split == "test" else rows), labels
    raise ValueError(f"dataset must be 'bdp' or 'fmnist', got {dataset!r}")


def binarise(rows: np.ndarray) -> np.ndarray:
    """The fixed test binarisation: 1 where the grey level exceeds 0.5."""
    return (np.asarray(rows) > 0.5).astype(np.float32)


def training_rows(rows: jax.Array, rng: jax.Array, dynamic_binarisation: bool) -> jax.Array:
    """A training batch: fresh Bernoulli draws of the pixels for binarised data, else as is."""
    if not dynamic_binarisation:
        return rows
    return (jax.random.uniform(rng, rows.shape, rows.dtype) < rows).astype(rows.dtype)


def as_rows(x, data_dim: int) -> jnp.ndarray:
    """Rows of ``data_dim`` floats from rows or images; uint8 pixels are binarised at 0.5."""
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    if x.shape[-1] != data_dim:
        if int(np.prod(x.shape[-3:])) != data_dim or x.ndim < 3:
            raise ValueError(f"expected rows of {data_dim} numbers (or images of as many pixels), "
                             f"got shape {tuple(x.shape)}")
        x = x.reshape(*x.shape[:-3], data_dim)
    if jnp.issubdtype(x.dtype, jnp.integer):
        return jnp.asarray(binarise(np.asarray(x) / 255.0))
    return jnp.asarray(x, jnp.float32)


def user_rows(spec: str, data_dim: int, dataset: str) -> np.ndarray:
    """A user's training rows: an ``.npy`` of ``(N, data_dim)`` floats, or (for a Fashion-MNIST model)
    anything ``nif-zoo`` reads as 28x28 grey images, scaled to [0, 1].
    """
    path = Path(spec)
    if path.suffix == ".npy" and path.is_file():
        array = np.load(path, allow_pickle=False)
        if array.ndim == 2 and np.issubdtype(array.dtype, np.floating):
            if array.shape[1] != data_dim:
                raise ValueError(f"{spec}: rows of {array.shape[1]} numbers; this model takes {data_dim}")
            if not np.isfinite(array).all():
                raise ValueError(f"{spec}: rows contain NaN or infinity; clean them first")
            return array.astype(np.float32)
    if dataset != "fmnist":
        raise ValueError(f"{spec}: a {dataset} model trains on an .npy file of (N, {data_dim}) floats")
    images, _ = image_data.load_dataset(spec, "train", (28, 28, 1))
    return images.reshape(len(images), -1).astype(np.float32) / 255.0
