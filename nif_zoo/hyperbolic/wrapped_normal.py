"""The wrapped normal G(mu, Sigma) on H^n (Nagano et al. 2019), diagonal Sigma.

Sampling: ``v ~ N(0, Sigma)`` in the tangent space at the origin, ``u = PT_{o->mu}((0, v))``,
``z = exp_mu(u)``. Density with respect to the Riemannian volume of H^n:
``log p(z) = log N(v; 0, Sigma) - (n - 1) log(sinh(r) / r)``, ``r = |v| / R``.
(No ``(n - 1) log R`` term: the authors' code adds one, which is wrong for R != 1.)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nif_zoo.hyperbolic import lorentz


def tangent_log_prob(v: jax.Array, scale: jax.Array, radius) -> jax.Array:
    """``log p(z)`` of the point that tangent coordinates ``v`` (relative to mu) are mapped to."""
    n = v.shape[-1]
    gaussian = -0.5 * jnp.sum((v / scale) ** 2 + 2.0 * jnp.log(scale) + np.log(2.0 * np.pi), -1)
    return gaussian - (n - 1) * lorentz.log_sinhc(lorentz.euclidean_norm(v) / radius)


def from_tangent(mu: jax.Array, v: jax.Array, radius) -> jax.Array:
    """``exp_mu(PT_{o->mu}((0, v)))``: the point for tangent coordinates ``v``."""
    u = lorentz.transport_from_origin(mu, v, radius)
    return lorentz.exp_map(mu, u, radius, u_norm=lorentz.euclidean_norm(v))


def to_tangent(mu: jax.Array, z: jax.Array, radius) -> jax.Array:
    """Inverse of `from_tangent`."""
    return lorentz.transport_to_origin(mu, lorentz.log_map(mu, z, radius), radius)


@functools.partial(jax.jit, static_argnames="shape")
def sample(rng: jax.Array, mu: jax.Array, scale: jax.Array, radius,
           shape: tuple[int, ...] = ()) -> tuple[jax.Array, jax.Array]:
    """``(z, log p(z))`` for ``shape + batch`` draws; ``mu`` (..., n + 1), ``scale`` (..., n)."""
    batch = jnp.broadcast_shapes(mu.shape[:-1], scale.shape[:-1])
    eps = jax.random.normal(rng, shape + batch + scale.shape[-1:], scale.dtype)
    v = scale * eps
    return from_tangent(mu, v, radius), tangent_log_prob(v, scale, radius)


def log_prob(z: jax.Array, mu: jax.Array, scale: jax.Array, radius) -> jax.Array:
    """``log p(z)`` of points ``z`` of H^n (checked to lie on it when not traced)."""
    if lorentz.is_concrete(z, radius):
        lorentz.check_on_manifold(z, radius, atol=_tolerance(z))
    return _log_prob(z, mu, scale, radius)


@jax.jit
def _log_prob(z, mu, scale, radius):
    return tangent_log_prob(to_tangent(mu, z, radius), scale, radius)


@jax.jit
def origin_log_prob(z: jax.Array, scale: jax.Array, radius) -> jax.Array:
    """``log p(z)`` for ``mu`` at the origin, without the cancellation of a general log map."""
    return tangent_log_prob(lorentz.log_origin(z, radius), scale, radius)


def _tolerance(x) -> float:
    return 1e-10 if jnp.asarray(x).dtype == jnp.float64 else 1e-5
