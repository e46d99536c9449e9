"""Volume-preserving rearrangements: squeeze (space-to-depth), reversal, fixed permutation."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nif_zoo.layers.base import Bijector, check_rank


def space_to_depth(x: jax.Array, factor: int = 2) -> jax.Array:
    b, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"cannot squeeze {h}x{w} images by {factor}: height and width must divide")
    x = x.reshape(b, h // factor, factor, w // factor, factor, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // factor, w // factor, factor * factor * c)


def depth_to_space(x: jax.Array, factor: int = 2) -> jax.Array:
    b, h, w, c = x.shape
    x = x.reshape(b, h, w, factor, factor, c // (factor * factor))
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * factor, w * factor, c // (factor * factor))


def _zero_log_det(x: jax.Array) -> jax.Array:
    return jnp.zeros(x.shape[:1], x.dtype)


class Squeeze(nn.Module, Bijector):
    """2 x 2 space-to-depth: (b, h, w, c) -> (b, h/2, w/2, 4c)."""

    def __call__(self, x: jax.Array, inverse: bool = False):
        check_rank(x, 4, "Squeeze")
        return (depth_to_space(x) if inverse else space_to_depth(x)), _zero_log_det(x)


class Reverse(nn.Module, Bijector):
    """Reverses the last axis (channels of an image, or a vector)."""

    def __call__(self, x: jax.Array, inverse: bool = False):
        return x[..., ::-1], _zero_log_det(x)


class Permute(nn.Module, Bijector):
    """A fixed random permutation of the last axis, derived from ``seed`` (no parameters)."""

    seed: int = 0

    def __call__(self, x: jax.Array, inverse: bool = False):
        perm = np.random.default_rng(self.seed).permutation(x.shape[-1])
        index = np.argsort(perm) if inverse else perm
        return x[..., index], _zero_log_det(x)
