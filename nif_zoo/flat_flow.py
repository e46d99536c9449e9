"""A small flow on vectors (ActNorm, MLP coupling, reversal), e.g. a learned prior on ``u``."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.layers.actnorm import ActNorm
from nif_zoo.layers.base import Bijector, check_rank
from nif_zoo.layers.coupling import FlatAffineCoupling
from nif_zoo.layers.reshape import Reverse


class FlatFlow(nn.Module, Bijector):
    """``num_layers`` x (ActNorm, affine MLP coupling, reversal); forward maps data to N(0, I)."""

    num_layers: int = 4
    hidden: int = 256

    @nn.compact
    def __call__(self, x: jax.Array, inverse: bool = False):
        check_rank(x, 2, "FlatFlow")
        layers = []
        for i in range(self.num_layers):
            layers += [ActNorm(name=f"actnorm{i}"), FlatAffineCoupling(self.hidden, name=f"coupling{i}"),
                       Reverse(name=f"reverse{i}")]
        log_det = jnp.zeros(x.shape[:1], x.dtype)
        for layer in reversed(layers) if inverse else layers:
            x, ld = layer(x, inverse=inverse)
            log_det = log_det + ld
        return x, log_det

    def log_prob(self, x: jax.Array) -> jax.Array:
        """Log density of ``x`` under the flow with a standard normal base."""
        z, log_det = self(x)
        return log_det - 0.5 * jnp.sum(z * z + math.log(2 * math.pi), axis=-1)
