"""The Gaussian noisy-injective-flow prior head (the paper's contribution).

``z = A u + b + eps`` with ``u ~ N(0, I_k)``, ``eps ~ N(0, s^2 Sigma)``; everything closed form.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.heads import woodbury


def _orthonormal_columns(key, shape, dtype=jnp.float32):
    q, _ = jnp.linalg.qr(jax.random.normal(key, shape, dtype))
    return q


class GaussianNIFHead(nn.Module):
    """Maps a ``dim``-vector to a ``latent_dim``-dimensional linear manifold plus noise.

    ``noise='diag'`` learns one ``log sigma^2`` per coordinate, ``'isotropic'`` a single one.
    """

    dim: int
    latent_dim: int
    noise: str = "diag"
    param_dtype: jnp.dtype = jnp.float32

    def setup(self):
        if self.noise not in ("diag", "isotropic"):
            raise ValueError(f"unknown noise {self.noise!r}; use 'diag' or 'isotropic'")
        self.a = self.param("a", _orthonormal_columns, (self.dim, self.latent_dim),
                            self.param_dtype)
        self.b = self.param("b", nn.initializers.zeros, (self.dim,), self.param_dtype)
        size = self.dim if self.noise == "diag" else 1
        self.raw_log_var = self.param("log_var", nn.initializers.zeros, (size,), self.param_dtype)

    def _terms(self, dtype, s=1.0):
        log_var = jnp.broadcast_to(self.raw_log_var, (self.dim,)).astype(dtype)
        return self.a.astype(dtype), self.b.astype(dtype), log_var + 2.0 * jnp.log(s)

    def log_prob(self, z: jax.Array, s: float = 1.0) -> jax.Array:
        """``log N(z; b, A A^T + s^2 Sigma)`` (``s > 0``)."""
        return woodbury.log_prob(z, *self._terms(z.dtype, s))

    def posterior(self, z: jax.Array):
        """``q(u | z) = N(mu, Lambda^-1)`` as ``(mu, cholesky(Lambda))``."""
        return woodbury.posterior(z, *self._terms(z.dtype))

    def log_partition(self, z: jax.Array) -> jax.Array:
        return woodbury.log_partition(z, *self._terms(z.dtype))

    def elbo(self, z: jax.Array) -> jax.Array:
        return woodbury.elbo(z, *self._terms(z.dtype))

    def encode(self, z: jax.Array) -> jax.Array:
        """The weighted pseudo-inverse ``mu(z)``: a point's coordinates on the manifold."""
        return self.posterior(z)[0]

    def decode(self, u: jax.Array, rng: jax.Array | None = None, s: float = 1.0) -> jax.Array:
        """``A u + b + s sigma e``; ``rng=None`` or ``s=0`` gives the point on the manifold."""
        a, b, log_var = self._terms(u.dtype)
        if rng is None:
            noise = jnp.zeros(u.shape[:-1] + (self.dim,), u.dtype)
        else:
            noise = jax.random.normal(rng, u.shape[:-1] + (self.dim,), u.dtype)
        return woodbury.generate(u, a, b, log_var, noise, s)

    def sample_latent(self, rng: jax.Array, n: int, t: float = 1.0, dtype=jnp.float32) -> jax.Array:
        return t * jax.random.normal(rng, (n, self.latent_dim), dtype)
