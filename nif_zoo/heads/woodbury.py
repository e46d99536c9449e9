"""Closed-form Gaussian noisy-injective-flow densities, never building the D x D covariance.

The generative story is ``z = A u + b + eps`` with ``u ~ N(0, I_k)`` and
``eps ~ N(0, diag(exp(log_var)))`` (math note, "Gaussian NIF prior head").

Every function works block-wise: ``z`` has shape ``(..., d)``, ``A`` ``(..., d, k)``,
``b`` and ``log_var`` ``(..., d)``, all broadcast against each other, and results keep the
leading shape (sum over blocks is the caller's job). A dense head is one block (d = D);
the upsampling layer has one block per input pixel; the stochastic coupling one per pixel and
example.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _tri_solve(chol: jax.Array, y: jax.Array, transpose: bool = False) -> jax.Array:
    """Solves ``L w = y`` (or ``L^T w = y``) for lower-triangular ``L``, broadcasting batches."""
    k = y.shape[-1]
    if chol.ndim == 2:  # one factor shared by the whole batch: a single multi-RHS solve
        flat = y.reshape(-1, k).T
        w = jax.scipy.linalg.solve_triangular(chol, flat, lower=True, trans=1 if transpose else 0)
        return w.T.reshape(y.shape)
    batch = jnp.broadcast_shapes(chol.shape[:-2], y.shape[:-1])
    chol = jnp.broadcast_to(chol, batch + chol.shape[-2:])
    y = jnp.broadcast_to(y, batch + (k,))
    w = jax.scipy.linalg.solve_triangular(chol, y[..., None], lower=True, trans=1 if transpose else 0)
    return w[..., 0]


def _log_det_from_chol(chol: jax.Array) -> jax.Array:
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def precision(a: jax.Array, log_var: jax.Array) -> jax.Array:
    """``Lambda = A^T Sigma^-1 A`` (k x k per block)."""
    return jnp.einsum("...dk,...d,...dl->...kl", a, jnp.exp(-log_var), a)


def projected_residual(z: jax.Array, a: jax.Array, b: jax.Array, log_var: jax.Array):
    """Returns ``r = z - b`` and ``A^T Sigma^-1 r``."""
    r = z - b
    return r, jnp.einsum("...dk,...d->...k", a, r * jnp.exp(-log_var))


def log_prob(z: jax.Array, a: jax.Array, b: jax.Array, log_var: jax.Array) -> jax.Array:
    """``log N(z; b, A A^T + Sigma)`` by Woodbury and the determinant lemma."""
    d, k = a.shape[-2:]
    r, y = projected_residual(z, a, b, log_var)
    chol_m = jnp.linalg.cholesky(jnp.eye(k, dtype=a.dtype) + precision(a, log_var))
    m = _tri_solve(chol_m, _tri_solve(chol_m, y), transpose=True)
    # r^T C^-1 r written as a sum of two non-negative terms: the difference form
    # r^T Sigma^-1 r - y^T M^-1 y cancels catastrophically when Sigma is tiny.
    off = r - jnp.einsum("...dk,...k->...d", a, m)
    quad = jnp.sum(off * off * jnp.exp(-log_var), -1) + jnp.sum(m * m, -1)
    log_det = jnp.sum(jnp.broadcast_to(log_var, z.shape[:-1] + (d,)), -1) + _log_det_from_chol(chol_m)
    return -0.5 * (d * math.log(2 * math.pi) + log_det + quad)


def posterior(z: jax.Array, a: jax.Array, b: jax.Array, log_var: jax.Array):
    """The stochastic inverse ``q(u | z) = N(mu, Lambda^-1)``.

    Returns ``(mu, chol)`` with ``chol`` the Cholesky factor of ``Lambda``; ``mu`` is the
    Sigma-weighted pseudo-inverse of ``z``.
    """
    _, y = projected_residual(z, a, b, log_var)
    chol = jnp.linalg.cholesky(precision(a, log_var))
    mu = _tri_solve(chol, _tri_solve(chol, y), transpose=True)
    return mu, chol


def log_partition(z: jax.Array, a: jax.Array, b: jax.Array, log_var: jax.Array) -> jax.Array:
    """``log Z(z) = log ∫ N(z; A u + b, Sigma) du``: change of volume plus distance to the manifold."""
    d, k = a.shape[-2:]
    mu, chol = posterior(z, a, b, log_var)
    off = z - b - jnp.einsum("...dk,...k->...d", a, mu)
    dist = jnp.sum(off * off * jnp.exp(-log_var), -1)
    sum_log_var = jnp.sum(jnp.broadcast_to(log_var, z.shape[:-1] + (d,)), -1)
    return -0.5 * ((d - k) * math.log(2 * math.pi) + sum_log_var + _log_det_from_chol(chol) + dist)


def posterior_trace(chol: jax.Array) -> jax.Array:
    """``tr(Lambda^-1)`` from the Cholesky factor of ``Lambda``."""
    k = chol.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(k, dtype=chol.dtype), chol.shape)
    inv_chol = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)  # L^-1, batched
    return jnp.sum(inv_chol * inv_chol, axis=(-2, -1))


def elbo(z: jax.Array, a: jax.Array, b: jax.Array, log_var: jax.Array) -> jax.Array:
    """Lower bound with the stochastic inverse and a standard normal ``p(u)`` (closed form)."""
    k = a.shape[-1]
    mu, chol = posterior(z, a, b, log_var)
    log_prior_at_mu = -0.5 * (k * math.log(2 * math.pi) + jnp.sum(mu * mu, -1))
    return log_prior_at_mu - 0.5 * posterior_trace(chol) + log_partition(z, a, b, log_var)


def sample_posterior(rng: jax.Array, mu: jax.Array, chol: jax.Array, num: int) -> jax.Array:
    """``num`` reparameterised draws ``u = mu + L^-T eps`` stacked on a new leading axis."""
    eps = jax.random.normal(rng, (num,) + mu.shape, mu.dtype)
    return mu + _tri_solve(chol, eps, transpose=True)


def generate(u: jax.Array, a: jax.Array, b: jax.Array, log_var: jax.Array, noise: jax.Array,
             s: float | jax.Array = 1.0) -> jax.Array:
    """``z = A u + b + s * sigma * noise``; ``s = 0`` lies on the manifold."""
    return jnp.einsum("...dk,...k->...d", a, u) + b + s * jnp.exp(0.5 * log_var) * noise
