"""Glow's learned split prior written as a bijection on the factored-out half."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.layers.base import Bijector, batch_sum, check_rank, split_channels


class ConditionalSplit(nn.Module, Bijector):
    """``y_b = (x_b - mu(x_a)) * exp(-log_std(x_a))``; ``x_a`` passes unchanged.

    In Glow ``x_b`` is scored under ``N(mu(x_a), exp(log_std(x_a))^2)``; as a bijection the
    backbone can hand ``y_b`` to any prior head. ``mu, log_std`` come from a zero-initialised
    3x3 convolution, so the layer starts as the identity.
    """

    @nn.compact
    def __call__(self, x: jax.Array, inverse: bool = False):
        check_rank(x, 4, "ConditionalSplit")
        x_a, x_b = split_channels(x)
        stats = nn.Conv(2 * x_b.shape[-1], (3, 3), padding="SAME", kernel_init=nn.initializers.zeros,
                        param_dtype=x.dtype, name="prior")(x_a)
        mu, log_std = split_channels(stats)
        if inverse:
            return jnp.concatenate([x_a, x_b * jnp.exp(log_std) + mu], -1), batch_sum(log_std)
        return jnp.concatenate([x_a, (x_b - mu) * jnp.exp(-log_std)], -1), -batch_sum(log_std)
