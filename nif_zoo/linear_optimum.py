"""The best log-likelihood any per-pixel linear flow reaches (Liao and He, arXiv 2102.06539).

A per-pixel linear flow ``z_p = W (x_p + b)`` (a 1x1 convolution, optionally after ActNorm's
shift) on N pixel vectors ``x_p`` of C channels under a standard normal prior has log-likelihood
``-1/2 sum_p |W (x_p + b)|^2 - (N C / 2) log 2 pi + N log|det W|``. Maximised over ``W`` it is

    ``-(N/2) [sum_i log lambda_i(S) + C (1 + log 2 pi)]``  at  ``W^T W = S^-1``,

with ``S = (1/N) sum_p x_p x_p^T`` the autocorrelation (no shift), or the covariance when the
shift is free (ActNorm): the maximum-likelihood Gaussian, the probabilistic-PCA limit with no
dimension dropped. "Per pixel" depends on the channels a pixel has: squeezing ``k x k`` blocks
into channels gives ``C = k^2 c`` and more correlation to use; ``k`` = image size is a full
Gaussian over images.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from nif_zoo.layers.preprocess import Logit, dequantize, quantize_pixels
from nif_zoo.layers.reshape import space_to_depth


def pixel_vectors(x: jax.Array, block: int = 1) -> jax.Array:
    """Images ``(n, h, w, c)`` -> ``(n h w / block^2, block^2 c)``: one row per (squeezed) pixel."""
    if x.ndim != 4:
        raise ValueError(f"pixel_vectors expects images (n, h, w, c), got shape {tuple(x.shape)}")
    if x.shape[1] % block or x.shape[2] % block:
        raise ValueError(f"block {block} does not divide the image size {tuple(x.shape[1:3])}")
    if block > 1:
        x = space_to_depth(x, block)
    return x.reshape(-1, x.shape[-1])


def second_moment(vectors: jax.Array, centred: bool) -> jax.Array:
    """``S``: the autocorrelation, or the covariance when ``centred`` (a free shift)."""
    if centred:
        vectors = vectors - jnp.mean(vectors, axis=0)
    return vectors.T @ vectors / vectors.shape[0]


def optimum_log_likelihood(vectors: jax.Array, centred: bool = False) -> jax.Array:
    """Total log-likelihood of the best linear flow on ``vectors`` ``(N, C)``."""
    n, c = vectors.shape
    eigenvalues = jnp.linalg.eigvalsh(second_moment(vectors, centred))
    return -0.5 * n * (jnp.sum(jnp.log(eigenvalues)) + c * (1.0 + math.log(2 * math.pi)))


def optimal_weight(vectors: jax.Array, centred: bool = False) -> jax.Array:
    """A ``W`` with ``W^T W = S^-1`` (the symmetric one, ``S^-1/2``)."""
    eigenvalues, eigenvectors = jnp.linalg.eigh(second_moment(vectors, centred))
    return (eigenvectors / jnp.sqrt(eigenvalues)) @ eigenvectors.T


def reference_bits_per_dim(images: np.ndarray, n_bits: int, blocks: tuple[int, ...], seed: int = 0,
                           logit_lambda: float | None = None) -> dict[int, float]:
    """Bits/dim of the best per-pixel linear flow fitted to these very images (shift free).

    The images are dequantised once with uniform noise (``seed``); with ``logit_lambda`` the flow
    acts after the logit transform that the zoo models use, and its log-det is counted. Fitting
    on the evaluation images makes this the most any per-pixel linear flow can reach on them.
    """
    x, _ = dequantize(jax.random.key(seed), quantize_pixels(images, n_bits), n_bits, jnp.float64)
    dim = math.prod(x.shape[1:])
    preprocess_log_det = 0.0
    if logit_lambda is not None:
        x, log_det = Logit(logit_lambda).apply({}, x)
        preprocess_log_det = float(jnp.sum(log_det))
    result = {}
    for block in blocks:
        total = float(optimum_log_likelihood(pixel_vectors(x, block), centred=True))
        log_p = (total + preprocess_log_det) / len(images)
        result[block] = -log_p / (dim * math.log(2.0)) + n_bits
    return result
