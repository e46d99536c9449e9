"""The smooth leaky ReLU of the Self Normalizing Flows paper, an elementwise bijection."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.layers.base import Bijector, batch_sum

NEWTON_STEPS = 24


class SmoothLeakyReLU(nn.Module, Bijector):
    """``y = alpha x + (1 - alpha) softplus(x)``, slope between ``alpha`` and 1; no parameters.

    The inverse has no closed form: Newton's method from ``x0 = y``. Since ``y > x`` everywhere
    and the map is convex and increasing, the iterates fall monotonically onto the root.
    """

    alpha: float = 0.3

    def _slope(self, x: jax.Array) -> jax.Array:
        return self.alpha + (1 - self.alpha) * jax.nn.sigmoid(x)

    def _value(self, x: jax.Array) -> jax.Array:
        return self.alpha * x + (1 - self.alpha) * jax.nn.softplus(x)

    def __call__(self, x: jax.Array, inverse: bool = False):
        if not inverse:
            return self._value(x), batch_sum(jnp.log(self._slope(x)))
        y, guess = x, x
        for _ in range(NEWTON_STEPS):
            guess = guess - (self._value(guess) - y) / self._slope(guess)
        return guess, -batch_sum(jnp.log(self._slope(guess)))
