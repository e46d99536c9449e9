"""The Self Normalizing Flows paper's MNIST backbones: images to a flat latent of the same size.

``gradient="selfnorm"`` trains the linear layers with the substituted gradient and learned
inverses; ``gradient="exact"`` is the paper's exact-gradient twin (same parameter names and
initialisation, so the same seed starts both at the same point). The paper places its learned
spline activation in the CNN; here both backbones use its smooth leaky ReLU (alpha = 0.3).
"""

from __future__ import annotations

import math
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.layers.base import Bijector, check_rank
from nif_zoo.layers.reshape import Squeeze
from nif_zoo.layers.selfnorm import SelfNormConv, SelfNormDense
from nif_zoo.layers.smooth_leaky_relu import SmoothLeakyReLU

Gradient = Literal["selfnorm", "exact"]


def _run(layers, x: jax.Array, inverse: bool):
    log_det = jnp.zeros(x.shape[:1], x.dtype)
    for layer in reversed(layers) if inverse else layers:
        x, ld = layer(x, inverse=inverse)
        log_det = log_det + ld
    return x, log_det


def _check_image(x: jax.Array, image_shape, name: str) -> None:
    check_rank(x, 4, name)
    if tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(f"{name} built for images of shape {tuple(image_shape)}, got {tuple(x.shape[1:])}")


def _check_latent(z: jax.Array, image_shape, name: str) -> None:
    check_rank(z, 2, f"{name} inverse")
    if z.shape[-1] != math.prod(image_shape):
        raise ValueError(f"latent has {z.shape[-1]} numbers; images of shape {tuple(image_shape)} "
                         f"need {math.prod(image_shape)}")


class DenseFlow(nn.Module, Bijector):
    """Flattened image -> ``num_layers`` D x D linear layers, smooth leaky ReLUs in between."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    num_layers: int = 2
    gradient: Gradient = "selfnorm"
    exact_inverse: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, inverse: bool = False):
        layers = []
        for i in range(self.num_layers):
            layers.append(SelfNormDense(gradient=self.gradient, exact_inverse=self.exact_inverse,
                                        name=f"dense{i}"))
            if i < self.num_layers - 1:
                layers.append(SmoothLeakyReLU(name=f"activation{i}"))
        if inverse:
            _check_latent(x, self.image_shape, "DenseFlow")
            y, log_det = _run(layers, x, True)
            return y.reshape(x.shape[0], *self.image_shape), log_det
        _check_image(x, self.image_shape, "DenseFlow")
        return _run(layers, x.reshape(x.shape[0], -1), False)


class ConvFlow(nn.Module, Bijector):
    """``blocks`` x ``layers_per_block`` k x k convolutions with a squeeze between blocks.

    Every convolution but the last is followed by a smooth leaky ReLU (the paper's 9-layer CNN:
    3 x 3 of 3 x 3 kernels). The latent is the last block's output flattened.
    """

    image_shape: tuple[int, int, int] = (28, 28, 1)
    blocks: int = 3
    layers_per_block: int = 3
    kernel_size: int = 3
    gradient: Gradient = "selfnorm"
    exact_inverse: bool = False

    def _out_shape(self) -> tuple[int, int, int]:
        h, w, c = self.image_shape
        s = 2 ** (self.blocks - 1)
        return h // s, w // s, c * s * s

    @nn.compact
    def __call__(self, x: jax.Array, inverse: bool = False):
        layers = []
        for b in range(self.blocks):
            for i in range(self.layers_per_block):
                layers.append(SelfNormConv(gradient=self.gradient, exact_inverse=self.exact_inverse,
                                           kernel_size=self.kernel_size, name=f"conv{b}_{i}"))
                if not (b == self.blocks - 1 and i == self.layers_per_block - 1):
                    layers.append(SmoothLeakyReLU(name=f"activation{b}_{i}"))
            if b < self.blocks - 1:
                layers.append(Squeeze(name=f"squeeze{b}"))
        if inverse:
            _check_latent(x, self.image_shape, "ConvFlow")
            return _run(layers, x.reshape(x.shape[0], *self._out_shape()), True)
        _check_image(x, self.image_shape, "ConvFlow")
        z, log_det = _run(layers, x, False)
        return z.reshape(z.shape[0], -1), log_det
