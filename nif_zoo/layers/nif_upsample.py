"""Nearest-neighbour upsampling NIF layer (paper section 4.1).

``z = depth_to_space(W u) + b + eps``: each input pixel p feeds only its own 2 x 2 x c' output
block, so ``A^T Sigma^-1 A`` is block diagonal and every formula of the Gaussian NIF head holds
block by block at cost O(h w c^3).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.heads import woodbury
from nif_zoo.heads.nif import _orthonormal_columns
from nif_zoo.layers.base import check_rank
from nif_zoo.layers.reshape import depth_to_space, space_to_depth


class UpsampleNIF(nn.Module):
    """Maps ``u`` of shape (h, w, c) to ``z`` of shape (2h, 2w, out_channels) plus noise."""

    out_shape: tuple[int, int, int]
    in_channels: int
    param_dtype: jnp.dtype = jnp.float32

    def setup(self):
        h2, w2, c_out = self.out_shape
        if h2 % 2 or w2 % 2:
            raise ValueError(f"out_shape {self.out_shape} must have even height and width")
        if self.in_channels >= 4 * c_out:
            raise ValueError(f"in_channels={self.in_channels} must be < 4 * out channels = {4 * c_out}")
        self.w = self.param("w", _orthonormal_columns, (4 * c_out, self.in_channels), self.param_dtype)
        self.b = self.param("b", nn.initializers.zeros, self.out_shape, self.param_dtype)
        self.log_var = self.param("log_var", nn.initializers.zeros, self.out_shape, self.param_dtype)

    def _blocks(self, z: jax.Array):
        check_rank(z, 4, "UpsampleNIF")
        if tuple(z.shape[1:]) != tuple(self.out_shape):
            raise ValueError(f"UpsampleNIF expects z of shape {self.out_shape}, got {z.shape[1:]}")
        dtype = z.dtype
        return (space_to_depth(z), self.w.astype(dtype), space_to_depth(self.b[None].astype(dtype))[0],
                space_to_depth(self.log_var[None].astype(dtype))[0])

    def log_prob(self, z: jax.Array) -> jax.Array:
        """Closed-form ``log p(z)`` with ``u ~ N(0, I)``."""
        return jnp.sum(woodbury.log_prob(*self._blocks(z)), axis=(1, 2))

    def log_partition(self, z: jax.Array) -> jax.Array:
        return jnp.sum(woodbury.log_partition(*self._blocks(z)), axis=(1, 2))

    def elbo(self, z: jax.Array) -> jax.Array:
        return jnp.sum(woodbury.elbo(*self._blocks(z)), axis=(1, 2))

    def posterior(self, z: jax.Array):
        """Per-pixel ``(mu, cholesky(Lambda_p))``; ``mu`` has shape (b, h, w, c)."""
        return woodbury.posterior(*self._blocks(z))

    def encode(self, z: jax.Array) -> jax.Array:
        return self.posterior(z)[0]

    def decode(self, u: jax.Array, rng: jax.Array | None = None, s: float = 1.0) -> jax.Array:
        check_rank(u, 4, "UpsampleNIF.decode")
        noise = (jnp.zeros if rng is None else lambda shape, dt: jax.random.normal(rng, shape, dt))(
            (u.shape[0],) + tuple(self.out_shape), u.dtype)
        mean = depth_to_space(jnp.einsum("bhwc,dc->bhwd", u, self.w.astype(u.dtype)))
        return mean + self.b + s * jnp.exp(0.5 * self.log_var) * noise

    def dense_matrix(self) -> jax.Array:
        """``A`` as a dense (2h 2w c', h w c) matrix: for tests only."""
        h2, w2, _ = self.out_shape
        n_in = (h2 // 2) * (w2 // 2) * self.in_channels
        basis = jnp.eye(n_in, dtype=self.w.dtype).reshape(n_in, h2 // 2, w2 // 2, self.in_channels)
        columns = depth_to_space(jnp.einsum("bhwc,dc->bhwd", basis, self.w))
        return columns.reshape(n_in, -1).T
