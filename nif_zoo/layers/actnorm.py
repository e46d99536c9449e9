"""ActNorm (Kingma & Dhariwal 2018): a per-channel affine map initialised from data."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.layers.base import Bijector


class ActNorm(nn.Module, Bijector):
    """``y = (x + loc) * exp(log_scale)`` over the last axis; any rank >= 2.

    At ``init`` the statistics of the first batch set ``loc`` and ``log_scale`` so that the
    outputs have zero mean and unit variance per channel. They are ordinary parameters, so a
    restored model keeps them and never re-initialises.
    """

    data_init: bool = True
    eps: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array, inverse: bool = False):
        if x.ndim < 2:
            raise ValueError(f"ActNorm expects (batch, ..., channels), got shape {tuple(x.shape)}")
        axes = tuple(range(x.ndim - 1))
        c = x.shape[-1]

        def init_loc(_):
            return -jnp.mean(x, axes) if self.data_init else jnp.zeros((c,), x.dtype)

        def init_log_scale(_):
            if not self.data_init:
                return jnp.zeros((c,), x.dtype)
            return -jnp.log(jnp.std(x, axes) + self.eps)

        loc = self.param("loc", init_loc)
        log_scale = self.param("log_scale", init_log_scale)
        per_position = jnp.prod(jnp.array(x.shape[1:-1])) if x.ndim > 2 else 1
        log_det = jnp.broadcast_to(per_position * jnp.sum(log_scale), x.shape[:1])
        if inverse:
            return x * jnp.exp(-log_scale) - loc, -log_det
        return (x + loc) * jnp.exp(log_scale), log_det
