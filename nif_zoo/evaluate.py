"""Evaluation: test bits/dim over dequantisation draws and ``s``, samples, reconstructions."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Sequence

import jax
import numpy as np

from nif_zoo import data as datasets
from nif_zoo.pretrained import Pretrained


def progress(label: str, done: int, total: int, started: float) -> None:
    """One self-overwriting progress line on stderr with the time left."""
    elapsed = time.time() - started
    left = elapsed / max(done, 1) * (total - done)
    end = "\n" if done >= total else ""
    print(f"\r{label}: {done}/{total}  {elapsed:.0f}s elapsed, {left:.0f}s left", end=end,
          file=sys.stderr, flush=True)


def bits_per_dim(model: Pretrained, images: np.ndarray, draws: int = 1, seed: int = 0,
                 s: float = 1.0, batch_size: int = 500, label: str = "bits/dim") -> dict:
    """Test bits/dim: the mean over images for each dequantisation draw, then mean and standard
    error over draws (at manifold-noise scale ``s``; deep NIF reports its ELBO).
    """
    per_draw, started = [], time.time()
    batches = list(datasets.sequential_batches(images, batch_size))
    total = draws * len(batches)
    for draw in range(draws):
        sums = 0.0
        for i, batch in enumerate(batches):
            rng = jax.random.fold_in(jax.random.key(seed), draw * 100_003 + i)
            sums += float(np.sum(model.bits_per_dim(batch, rng, s=s)))
            progress(label, draw * len(batches) + i + 1, total, started)
        per_draw.append(sums / len(images))
    values = np.asarray(per_draw)
    stderr = float(values.std(ddof=1) / math.sqrt(draws)) if draws > 1 else float("nan")
    return {"mean": float(values.mean()), "stderr": stderr, "draws": draws,
            "images": int(len(images)), "s": s}


def samples(model: Pretrained, n: int, t: float, s: float, seed: int = 0,
            batch_size: int = 500) -> np.ndarray:
    """``n`` uint8 samples, drawn in batches of one compiled size."""
    out = []
    for i in range(0, n, batch_size):
        rng = jax.random.fold_in(jax.random.key(seed), i)
        out.append(model.sample(rng, batch_size, t=t, s=s))
    return np.concatenate(out)[:n]


def encode_all(model: Pretrained, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The low-dimensional latent of every image, padded to one compiled batch size."""
    out = []
    for batch in datasets.sequential_batches(images, batch_size):
        padded = np.concatenate([batch, np.repeat(batch[:1], batch_size - len(batch), 0)])
        out.append(np.asarray(model.encode(padded))[: len(batch)])
    return np.concatenate(out)


def sweep(values: Iterable[float], fn) -> dict[str, float]:
    return {f"{v:g}": fn(v) for v in values}


def s_values(stop: float = 1.2, step: float = 0.2) -> Sequence[float]:
    return [round(i * step, 10) for i in range(int(round(stop / step)) + 1)]
