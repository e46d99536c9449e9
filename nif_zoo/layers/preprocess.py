"""From n-bit pixels to the real line: dequantisation and the logit transform."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.layers.base import Bijector, batch_sum


def quantize_pixels(images: jax.Array, n_bits: int) -> jax.Array:
    """uint8 pixels 0..255 to n-bit values ``v = pixel >> (8 - n)``."""
    return jnp.right_shift(jnp.asarray(images).astype(jnp.int32), 8 - n_bits)


def dequantize(rng: jax.Array | None, v: jax.Array, n_bits: int, dtype=jnp.float32):
    """``x = (v + U) / 2^n - 1/2`` with ``U ~ Uniform[0, 1)``; ``rng=None`` takes ``U = 1/2``.

    Returns ``(x, log_det)`` where ``log_det = -D n log 2`` turns the density of ``x`` into a
    bound on the probability of ``v`` (bits per dimension: math note).
    """
    v = jnp.asarray(v)
    if not jnp.issubdtype(v.dtype, jnp.integer):
        raise TypeError(f"dequantize expects integer pixel values, got dtype {v.dtype}")
    noise = 0.5 if rng is None else jax.random.uniform(rng, v.shape, dtype)
    x = (v.astype(dtype) + noise) / 2**n_bits - 0.5
    dim = math.prod(v.shape[1:])
    return x, jnp.full(v.shape[:1], -dim * n_bits * math.log(2.0), dtype)


def quantize(x: jax.Array, n_bits: int) -> jax.Array:
    """Inverse of :func:`dequantize`: the n-bit pixel value whose cell holds ``x``."""
    return jnp.clip(jnp.floor((x + 0.5) * 2**n_bits), 0, 2**n_bits - 1).astype(jnp.int32)


class Logit(nn.Module, Bijector):
    """``y = logit(lam + (1 - 2 lam) (x + 1/2))`` for ``x`` in ``[-1/2, 1/2)``."""

    lam: float = 0.05

    def __call__(self, x: jax.Array, inverse: bool = False):
        log_affine = math.log1p(-2 * self.lam)
        if inverse:
            y = x
            log_det = batch_sum(log_affine - jax.nn.log_sigmoid(y) - jax.nn.log_sigmoid(-y))
            return (jax.nn.sigmoid(y) - self.lam) / (1 - 2 * self.lam) - 0.5, -log_det
        p = self.lam + (1 - 2 * self.lam) * (x + 0.5)
        return jnp.log(p) - jnp.log1p(-p), batch_sum(log_affine - jnp.log(p) - jnp.log1p(-p))
