"""Deep NIF (appendix B.4): a Gaussian NIF head whose ``p(u)`` is itself a flow."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.flat_flow import FlatFlow
from nif_zoo.heads import woodbury
from nif_zoo.heads.nif import GaussianNIFHead


class DeepNIFHead(nn.Module):
    """``u ~ FlatFlow``, ``z = A u + b + eps``; trained with the ELBO or an IWAE bound.

    With the stochastic inverse ``q(u|z) ∝ p(z|u)``, the importance weight
    ``p(u) p(z|u) / q(u|z)`` is ``p(u) Z(z)``, so the K-sample bound is
    ``log Z(z) + logmeanexp_k log p(u_k)`` and K = 1 in expectation is the ELBO.
    """

    dim: int
    latent_dim: int
    noise: str = "diag"
    prior_layers: int = 4
    prior_hidden: int = 256

    def setup(self):
        self.nif = GaussianNIFHead(self.dim, self.latent_dim, self.noise)
        self.prior = FlatFlow(self.prior_layers, self.prior_hidden)

    def __call__(self, z: jax.Array) -> jax.Array:
        """Initialises both parts: the prior's ActNorm from the posterior means of ``z``."""
        return self.prior.log_prob(self.nif.encode(z))

    def bound(self, z: jax.Array, rng: jax.Array, num_samples: int = 1, iwae: bool = False):
        """ELBO (``iwae=False``: mean over samples) or the importance-weighted bound."""
        mu, chol = self.nif.posterior(z)
        u = woodbury.sample_posterior(rng, mu, chol, num_samples)
        log_prior = self.prior.log_prob(u.reshape(-1, self.latent_dim)).reshape(u.shape[:-1])
        combine = (lambda lp: jax.nn.logsumexp(lp, 0) - jnp.log(num_samples)) if iwae else (
            lambda lp: jnp.mean(lp, 0))
        return self.nif.log_partition(z) + combine(log_prior)

    def encode(self, z: jax.Array) -> jax.Array:
        return self.nif.encode(z)

    def decode(self, u: jax.Array, rng: jax.Array | None = None, s: float = 1.0) -> jax.Array:
        return self.nif.decode(u, rng, s)

    def sample_latent(self, rng: jax.Array, n: int, t: float = 1.0, dtype=jnp.float32) -> jax.Array:
        base = t * jax.random.normal(rng, (n, self.latent_dim), dtype)
        return self.prior(base, inverse=True)[0]
