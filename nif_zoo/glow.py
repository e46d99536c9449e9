"""The multi-scale Glow backbone: a bijection from images to a flat latent of the same size."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.diagnostics import record
from nif_zoo.layers.actnorm import ActNorm
from nif_zoo.layers.base import Bijector, check_rank
from nif_zoo.layers.coupling import AffineCoupling, ScaleFn
from nif_zoo.layers.invconv import InvConv1x1
from nif_zoo.layers.reshape import depth_to_space, space_to_depth
from nif_zoo.layers.selfnorm import SelfNormConv
from nif_zoo.layers.split import ConditionalSplit


class FlowStep(nn.Module, Bijector):
    """ActNorm, invertible 1x1 convolution (self-normalizing with ``selfnorm``), coupling."""

    hidden: int = 256
    additive: bool = False
    scale_fn: ScaleFn = "sigmoid"
    lu: bool = True
    max_log_scale: float = 0.0
    spectral_cap: float = 0.0
    selfnorm: bool = False
    selfnorm_exact_inverse: bool = False  # invert the self-normalizing 1x1 by a solve, not R

    @nn.compact
    def __call__(self, x: jax.Array, inverse: bool = False):
        layers = [
            ActNorm(name="actnorm"),
            (SelfNormConv(kernel_size=1, use_bias=False, exact_inverse=self.selfnorm_exact_inverse,
                          name="invconv") if self.selfnorm
             else InvConv1x1(lu=self.lu, name="invconv")),
            AffineCoupling(self.hidden, self.additive, self.scale_fn, self.max_log_scale,
                           self.spectral_cap, name="coupling"),
        ]
        log_det = jnp.zeros(x.shape[:1], x.dtype)
        for layer in reversed(layers) if inverse else layers:
            x, ld = layer(x, inverse=inverse)
            record(self, f"{layer.name}_log_det", lambda ld=ld: ld)
            log_det = log_det + ld
        return x, log_det


class _ScanBody(nn.Module):
    """Adapts a FlowStep to ``nn.scan``'s ``(carry, xs) -> (carry, ys)``."""

    step: dict
    inverse: bool = False

    @nn.compact
    def __call__(self, carry, _):
        x, log_det = carry
        y, ld = FlowStep(**self.step, name="step")(x, inverse=self.inverse)
        return (y, log_det + ld), None


def _level_shapes(image_shape, levels):
    """Shapes (h, w, c) seen by the steps of each level, and the size factored out after it."""
    h, w, c = image_shape
    shapes = []
    for level in range(levels):
        h, w, c = h // 2, w // 2, c * 4
        shapes.append((h, w, c))
        if level < levels - 1:
            c = c - c // 2
    return shapes


class Glow(nn.Module, Bijector):
    """``levels`` x (squeeze, ``steps`` flow steps, factor out half) mapping images to ``(b, D)``.

    Identical steps are stacked with ``nn.scan`` (parameters have a leading ``steps`` axis).
    ``unroll=False`` keeps the loop, so compile time does not grow with depth; ``unroll=True``
    unrolls it, which XLA's CPU backend runs about 3x faster (measured: benchmarks/glow.py). The
    factored-out halves pass through unchanged (``split='passthrough'``, the NIF authors') or
    through Glow's learned conditional split (``'learned'``). The latent is every factored-out
    half flattened, then the last level's output, concatenated.
    """

    image_shape: tuple[int, int, int] = (28, 28, 1)
    levels: int = 2
    steps: int = 16
    hidden: int = 256
    additive: bool = False
    scale_fn: ScaleFn = "sigmoid"
    lu: bool = True
    split: str = "passthrough"
    remat: bool = False
    unroll: bool = True
    max_log_scale: float = 0.0
    spectral_cap: float = 0.0
    selfnorm: bool = False
    selfnorm_exact_inverse: bool = False

    def _steps(self, level: int, inverse: bool):
        body = nn.remat(_ScanBody) if self.remat else _ScanBody
        scanned = nn.scan(body, variable_axes={"params": 0, "losses": 0, "diagnostics": 0},
                          split_rngs={"params": True},
                          length=self.steps, reverse=inverse,
                          unroll=self.steps if self.unroll else 1)
        step = dict(hidden=self.hidden, additive=self.additive, scale_fn=self.scale_fn, lu=self.lu,
                    max_log_scale=self.max_log_scale, spectral_cap=self.spectral_cap,
                    selfnorm=self.selfnorm, selfnorm_exact_inverse=self.selfnorm_exact_inverse)
        return scanned(step, inverse, name=f"level{level}")

    def _split(self, level: int):
        if self.split == "learned":
            return ConditionalSplit(name=f"split{level}")
        if self.split != "passthrough":
            raise ValueError(f"unknown split {self.split!r}; use 'passthrough' or 'learned'")
        return None

    @nn.compact
    def __call__(self, x: jax.Array, inverse: bool = False):
        if inverse:
            return self._inverse(x)
        check_rank(x, 4, "Glow")
        if tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"Glow built for images of shape {tuple(self.image_shape)}, "
                             f"got {tuple(x.shape[1:])}")
        log_det = jnp.zeros(x.shape[:1], x.dtype)
        pieces = []
        for level in range(self.levels):
            x = space_to_depth(x)
            (x, log_det), _ = self._steps(level, False)((x, log_det), None)
            if level < self.levels - 1:
                split = self._split(level)
                if split is not None:
                    x, ld = split(x)
                    record(self, f"split{level}_log_det", lambda ld=ld: ld)
                    log_det = log_det + ld
                keep = x.shape[-1] - x.shape[-1] // 2
                pieces.append(x[..., keep:].reshape(x.shape[0], -1))
                x = x[..., :keep]
        pieces.append(x.reshape(x.shape[0], -1))
        return jnp.concatenate(pieces, axis=-1), log_det

    def _inverse(self, z: jax.Array):
        check_rank(z, 2, "Glow inverse")
        if z.shape[-1] != math.prod(self.image_shape):
            raise ValueError(f"latent has {z.shape[-1]} numbers; images of shape "
                             f"{tuple(self.image_shape)} need {math.prod(self.image_shape)}")
        shapes = _level_shapes(self.image_shape, self.levels)
        b = z.shape[0]
        offsets = [0]
        for h, w, c in shapes[:-1]:
            offsets.append(offsets[-1] + h * w * (c // 2))
        h, w, c = shapes[-1]
        x = z[:, offsets[-1]:].reshape(b, h, w, c)
        log_det = jnp.zeros((b,), z.dtype)
        for level in reversed(range(self.levels)):
            if level < self.levels - 1:
                h, w, c = shapes[level]
                out = z[:, offsets[level]:offsets[level + 1]].reshape(b, h, w, c // 2)
                x = jnp.concatenate([x, out], axis=-1)
                split = self._split(level)
                if split is not None:
                    x, ld = split(x, inverse=True)
                    log_det = log_det + ld
            (x, log_det), _ = self._steps(level, True)((x, log_det), None)
            x = depth_to_space(x)
        return x, log_det
