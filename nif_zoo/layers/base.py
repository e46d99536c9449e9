"""The contract every bijective layer obeys.

Direction: *forward* maps data to latent. A layer is a linen module whose ``__call__(x,
inverse=False)`` returns ``(y, log_det)``, with ``log_det = log|det dy/dx|`` of the map it
applies, summed over the event dimensions (shape: the batch, one leading axis). Parameters are
always created in the forward direction (ActNorm initialises from the data it first sees).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


class Bijector:
    """Mixin naming the two directions of ``__call__``."""

    def forward_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self(x, inverse=False)

    def inverse_and_log_det(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self(z, inverse=True)


def check_rank(x: jax.Array, rank: int, layer: str) -> None:
    if x.ndim != rank:
        kind = "images (batch, height, width, channels)" if rank == 4 else "vectors (batch, dim)"
        raise ValueError(f"{layer} expects {kind}, a {rank}-d array; got shape {tuple(x.shape)}")


def split_channels(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    half = x.shape[-1] // 2
    return x[..., :half], x[..., half:]


def batch_sum(x: jax.Array) -> jax.Array:
    """Sums every axis but the leading (batch) one."""
    return jnp.sum(x.reshape(x.shape[0], -1), axis=1)
