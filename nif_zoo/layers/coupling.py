"""Affine and additive coupling for images (Glow) and for vectors (RealNVP-style MLP)."""

from __future__ import annotations

from typing import ClassVar, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.layers.base import Bijector, batch_sum, check_rank, split_channels
from nif_zoo.layers.lipschitz import CappedConv, cap_kernel

ScaleFn = Literal["sigmoid", "exp_tanh"]


def log_scale_of(h: jax.Array, scale_fn: ScaleFn, max_log_scale: float = 0.0) -> jax.Array:
    """Log of the coupling scale: ``sigmoid(h + 2)`` (Glow) or ``exp(tanh(h))`` (NIF authors).

    ``max_log_scale > 0`` bounds it smoothly to ``(-max, max)`` (``max tanh(s / max)``): Glow's
    sigmoid scale has no lower bound, so its inverse can expand without limit.
    """
    if scale_fn == "sigmoid":
        log_scale = jax.nn.log_sigmoid(h + 2.0)
    elif scale_fn == "exp_tanh":
        log_scale = jnp.tanh(h)
    else:
        raise ValueError(f"unknown scale_fn {scale_fn!r}; use 'sigmoid' or 'exp_tanh'")
    if max_log_scale > 0:
        log_scale = max_log_scale * jnp.tanh(log_scale / max_log_scale)
    return log_scale


class PointwiseDense(nn.Module):
    """A 1x1 convolution as a matrix product over the last axis (about 2x nn.Conv on CPU).

    ``spectral_cap > 0`` caps the kernel's spectral norm (``nif_zoo.layers.lipschitz``).
    """

    features: int
    zero_init: bool = False
    spectral_cap: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = nn.initializers.zeros if self.zero_init else nn.initializers.lecun_normal()
        kernel = self.param("kernel", init, (x.shape[-1], self.features), x.dtype)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), x.dtype)
        if self.spectral_cap > 0:
            kernel = cap_kernel(kernel, self.spectral_cap)
        return jnp.dot(x, kernel) + bias


class CouplingNet(nn.Module):
    """3x3 conv, ReLU, 1x1 conv, ReLU, zero-initialised 3x3 conv: every step starts as identity.

    ``spectral_cap > 0`` caps every kernel's spectral norm (``nif_zoo.layers.lipschitz``).
    """

    hidden: int
    out_channels: int
    spectral_cap: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cap = self.spectral_cap
        if cap > 0:  # same parameter names and shapes as the plain layers below
            layers = (CappedConv(self.hidden, (3, 3), cap, name="Conv_0"),
                      PointwiseDense(self.hidden, spectral_cap=cap, name="PointwiseDense_0"),
                      CappedConv(self.out_channels, (3, 3), cap, zero_init=True, name="Conv_1"))
        else:
            layers = (nn.Conv(self.hidden, (3, 3), padding="SAME", param_dtype=x.dtype),
                      PointwiseDense(self.hidden),
                      nn.Conv(self.out_channels, (3, 3), padding="SAME",
                              kernel_init=nn.initializers.zeros, param_dtype=x.dtype))
        h = nn.relu(layers[0](x))
        h = nn.relu(layers[1](h))
        return layers[2](h)


class MLPNet(nn.Module):
    """Two hidden ReLU layers and a zero-initialised output layer (``spectral_cap``: as above)."""

    hidden: int
    out_features: int
    spectral_cap: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cap = self.spectral_cap
        if cap > 0:
            layers = (PointwiseDense(self.hidden, spectral_cap=cap, name="Dense_0"),
                      PointwiseDense(self.hidden, spectral_cap=cap, name="Dense_1"),
                      PointwiseDense(self.out_features, True, cap, name="Dense_2"))
        else:
            layers = (nn.Dense(self.hidden, param_dtype=x.dtype), nn.Dense(self.hidden, param_dtype=x.dtype),
                      nn.Dense(self.out_features, kernel_init=nn.initializers.zeros, param_dtype=x.dtype))
        h = nn.relu(layers[0](x))
        h = nn.relu(layers[1](h))
        return layers[2](h)


def _couple(x, net_out, inverse, additive, scale_fn, max_log_scale=0.0):
    x_a, x_b = split_channels(x)
    if additive:
        shift, log_scale = net_out, jnp.zeros_like(net_out)
    else:
        shift, raw = split_channels(net_out)
        log_scale = log_scale_of(raw, scale_fn, max_log_scale)
    if inverse:
        y_b = x_b * jnp.exp(-log_scale) - shift
        return jnp.concatenate([x_a, y_b], -1), -batch_sum(log_scale)
    y_b = (x_b + shift) * jnp.exp(log_scale)
    return jnp.concatenate([x_a, y_b], -1), batch_sum(log_scale)


class AffineCoupling(nn.Module, Bijector):
    """Image coupling: ``y_b = (x_b + m) * scale`` with ``(m, log scale) = NN(x_a)``.

    Stability controls (off at 0): ``max_log_scale`` bounds the log-scale, ``spectral_cap`` the
    spectral norm of the network's kernels.
    """

    hidden: int = 256
    additive: bool = False
    scale_fn: ScaleFn = "sigmoid"
    max_log_scale: float = 0.0
    spectral_cap: float = 0.0
    rank: ClassVar[int] = 4

    def _net(self, out_features: int) -> nn.Module:
        return CouplingNet(self.hidden, out_features, self.spectral_cap, name="net")

    @nn.compact
    def __call__(self, x: jax.Array, inverse: bool = False):
        check_rank(x, self.rank, type(self).__name__)
        x_a, x_b = split_channels(x)
        net_out = self._net(x_b.shape[-1] * (1 if self.additive else 2))(x_a)
        return _couple(x, net_out, inverse, self.additive, self.scale_fn, self.max_log_scale)


class FlatAffineCoupling(AffineCoupling):
    """Vector coupling with an MLP, for low-dimensional flows."""

    rank: ClassVar[int] = 2

    def _net(self, out_features: int) -> nn.Module:
        return MLPNet(self.hidden, out_features, self.spectral_cap, name="net")
