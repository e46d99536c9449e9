"""Affine and additive coupling for images (Glow) and for vectors (RealNVP-style MLP)."""

from __future__ import annotations

from typing import ClassVar, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.layers.base import Bijector, batch_sum, check_rank, split_channels

ScaleFn = Literal["sigmoid", "exp_tanh"]


def log_scale_of(h: jax.Array, scale_fn: ScaleFn) -> jax.Array:
    """Log of the coupling scale: ``sigmoid(h + 2)`` (Glow) or ``exp(tanh(h))`` (NIF authors)."""
    if scale_fn == "sigmoid":
        return jax.nn.log_sigmoid(h + 2.0)
    if scale_fn == "exp_tanh":
        return jnp.tanh(h)
    raise ValueError(f"unknown scale_fn {scale_fn!r}; use 'sigmoid' or 'exp_tanh'")


class PointwiseDense(nn.Module):
    """A 1x1 convolution as a matrix product over the last axis (about 2x nn.Conv on CPU)."""

    features: int
    zero_init: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = nn.initializers.zeros if self.zero_init else nn.initializers.lecun_normal()
        kernel = self.param("kernel", init, (x.shape[-1], self.features), x.dtype)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), x.dtype)
        return jnp.dot(x, kernel) + bias


class CouplingNet(nn.Module):
    """3x3 conv, ReLU, 1x1 conv, ReLU, zero-initialised 3x3 conv: every step starts as identity."""

    hidden: int
    out_channels: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.relu(nn.Conv(self.hidden, (3, 3), padding="SAME", param_dtype=x.dtype)(x))
        h = nn.relu(PointwiseDense(self.hidden)(h))
        return nn.Conv(self.out_channels, (3, 3), padding="SAME", kernel_init=nn.initializers.zeros,
                       param_dtype=x.dtype)(h)


class MLPNet(nn.Module):
    """Two hidden ReLU layers and a zero-initialised output layer."""

    hidden: int
    out_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.relu(nn.Dense(self.hidden, param_dtype=x.dtype)(x))
        h = nn.relu(nn.Dense(self.hidden, param_dtype=x.dtype)(h))
        return nn.Dense(self.out_features, kernel_init=nn.initializers.zeros, param_dtype=x.dtype)(h)


def _couple(x, net_out, inverse, additive, scale_fn):
    x_a, x_b = split_channels(x)
    if additive:
        shift, log_scale = net_out, jnp.zeros_like(net_out)
    else:
        shift, raw = split_channels(net_out)
        log_scale = log_scale_of(raw, scale_fn)
    if inverse:
        y_b = x_b * jnp.exp(-log_scale) - shift
        return jnp.concatenate([x_a, y_b], -1), -batch_sum(log_scale)
    y_b = (x_b + shift) * jnp.exp(log_scale)
    return jnp.concatenate([x_a, y_b], -1), batch_sum(log_scale)


class AffineCoupling(nn.Module, Bijector):
    """Image coupling: ``y_b = (x_b + m) * scale`` with ``(m, log scale) = NN(x_a)``."""

    hidden: int = 256
    additive: bool = False
    scale_fn: ScaleFn = "sigmoid"
    rank: ClassVar[int] = 4

    def _net(self, out_features: int) -> nn.Module:
        return CouplingNet(self.hidden, out_features, name="net")

    @nn.compact
    def __call__(self, x: jax.Array, inverse: bool = False):
        check_rank(x, self.rank, type(self).__name__)
        x_a, x_b = split_channels(x)
        net_out = self._net(x_b.shape[-1] * (1 if self.additive else 2))(x_a)
        return _couple(x, net_out, inverse, self.additive, self.scale_fn)


class FlatAffineCoupling(AffineCoupling):
    """Vector coupling with an MLP, for low-dimensional flows."""

    rank: ClassVar[int] = 2

    def _net(self, out_features: int) -> nn.Module:
        return MLPNet(self.hidden, out_features, name="net")
