"""Stochastic coupling NIF layer (paper section 4.2): a Gaussian NIF conditioned on the kept half."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.heads import woodbury
from nif_zoo.layers.base import check_rank
from nif_zoo.layers.coupling import CouplingNet


class StochasticCoupling(nn.Module):
    """Keeps ``x_a`` (first ``keep`` channels); ``x_b`` given ``x_a`` is ``A u_b + b + eps``.

    Per pixel, ``A`` (c_b x latent_channels), ``b`` and ``log sigma^2`` come from a network of
    ``x_a`` added to learned base values (the network starts at zero, so ``A`` starts as the
    base's orthonormal columns). Density direction: ``u_b ~ q(u_b | x_b, x_a)`` and the layer
    adds ``log Z(x_b; x_a)`` to the bound in place of a log-determinant.
    """

    keep: int
    latent_channels: int
    hidden: int = 64

    def _conditional(self, x_a: jax.Array, c_b: int):
        k = self.latent_channels
        if not 0 < k < c_b:
            raise ValueError(f"latent_channels={k} must be in 1..{c_b - 1} (the dropped half has {c_b})")
        base_a = self.param("base_a", lambda key: jnp.linalg.qr(jax.random.normal(key, (c_b, k)))[0])
        base_log_var = self.param("base_log_var", nn.initializers.zeros, (c_b,))
        out = CouplingNet(self.hidden, c_b * k + 2 * c_b, name="net")(x_a)
        delta_a, b, log_var = jnp.split(out, [c_b * k, c_b * k + c_b], axis=-1)
        a = base_a.astype(x_a.dtype) + delta_a.reshape(delta_a.shape[:-1] + (c_b, k))
        return a, b, log_var + base_log_var.astype(x_a.dtype)

    @nn.compact
    def __call__(self, x: jax.Array, c_b: int | None = None, u_b: jax.Array | None = None,
                 rng: jax.Array | None = None, s: float = 1.0):
        """Density direction when ``u_b`` is None; generation from ``(x_a, u_b)`` otherwise."""
        check_rank(x, 4, "StochasticCoupling")
        x_a = x[..., : self.keep]
        if u_b is None:
            x_b = x[..., self.keep:]
            a, b, log_var = self._conditional(x_a, x_b.shape[-1])
            mu, chol = woodbury.posterior(x_b, a, b, log_var)
            u = mu if rng is None else woodbury.sample_posterior(rng, mu, chol, 1)[0]
            log_z = jnp.sum(woodbury.log_partition(x_b, a, b, log_var), axis=(1, 2))
            return jnp.concatenate([x_a, u], -1), log_z
        a, b, log_var = self._conditional(x_a, c_b)
        noise = jnp.zeros(u_b.shape[:-1] + (c_b,), x.dtype) if rng is None else jax.random.normal(
            rng, u_b.shape[:-1] + (c_b,), x.dtype)
        return jnp.concatenate([x_a, woodbury.generate(u_b, a, b, log_var, noise, s)], -1)

    def forward_and_log_partition(self, x: jax.Array, rng: jax.Array | None = None):
        """``(concat(x_a, u_b), log Z)``; ``rng=None`` takes the posterior mean."""
        return self(x, rng=rng)

    def generate(self, x_a_u_b: jax.Array, c_b: int, rng: jax.Array | None = None, s: float = 1.0):
        return self(x_a_u_b, c_b=c_b, u_b=x_a_u_b[..., self.keep:], rng=rng, s=s)
