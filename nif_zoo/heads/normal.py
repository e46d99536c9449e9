"""The standard normal prior: the "nf" baseline head."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


class StandardNormalHead(nn.Module):
    """``p(z) = N(z; 0, I_D)``; its latent is ``z`` itself and every ``z`` is on its manifold."""

    dim: int

    def log_prob(self, z: jax.Array, s: float = 1.0) -> jax.Array:
        del s  # no manifold noise: the whole space is the manifold
        return -0.5 * jnp.sum(z * z + math.log(2 * math.pi), axis=-1)

    def encode(self, z: jax.Array) -> jax.Array:
        return z

    def decode(self, u: jax.Array, rng: jax.Array | None = None, s: float = 1.0) -> jax.Array:
        del rng, s
        return u

    def sample_latent(self, rng: jax.Array, n: int, t: float = 1.0, dtype=jnp.float32) -> jax.Array:
        return t * jax.random.normal(rng, (n, self.dim), dtype)
