"""The closed forms of ``nif_zoo.heads.woodbury`` against dense references (math note checks).

Everything runs in float64 with fresh random ``A, b, sigma, z``; the references build the
D x D covariance ``C = A A^T + Sigma`` (scipy) or integrate numerically.
"""

from __future__ import annotations

import functools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from nif_zoo.heads import woodbury

SHAPES = [(5, 2), (6, 1), (4, 4)]  # (D, k), including k = D


# LLVM's optimisation passes are most of XLA:CPU's compile time, and these programs are tiny and
# run once: compile them without (same HLO, same arithmetic; about twice as fast to compile).
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

# the functions under test, each compiled once per shape
wb = types.SimpleNamespace(**{
    name: fast_jit(getattr(woodbury, name))
    for name in ("log_prob", "posterior", "log_partition", "posterior_trace", "elbo", "generate")
}, sample_posterior=fast_jit(woodbury.sample_posterior, static_argnums=3))


def rng_key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")  # compiles far faster than threefry on CPU


def random_nif(seed: int, d: int, k: int, batch: int = 6, log_var_range=(-1.5, 0.5)):
    """``(z, A, b, log_var)`` as numpy float64; half the points are far from the manifold."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, k))
    b = rng.standard_normal(d)
    log_var = rng.uniform(*log_var_range, d)
    u = rng.standard_normal((batch, k))
    z = u @ a.T + b + np.exp(0.5 * log_var) * rng.standard_normal((batch, d))
    z[batch // 2:] += 3.0 * rng.standard_normal((batch - batch // 2, d))
    return z, a, b, log_var


def dense_log_prob(z, a, b, log_var):
    return stats.multivariate_normal(b, a @ a.T + np.diag(np.exp(log_var))).logpdf(z)


def dense_cholesky_log_prob(z, a, b, log_var):
    c = a @ a.T + np.diag(np.exp(log_var))
    chol = np.linalg.cholesky(c)
    w = np.linalg.solve(chol, (z - b).T)
    return -0.5 * (len(b) * math.log(2 * math.pi) + 2 * np.sum(np.log(np.diag(chol)))
                   + np.sum(w * w, axis=0))


def weighted_least_squares(z, a, b, log_var):
    """``argmin_u (z - A u - b)^T Sigma^-1 (z - A u - b)``, by lstsq (not by normal equations)."""
    w = np.exp(-0.5 * log_var)
    return np.linalg.lstsq(a * w[:, None], ((z - b) * w).T, rcond=None)[0].T


def dense_log_partition(z, a, b, log_var, tau=1e3):
    """``log ∫ N(z; A u + b, Sigma) du`` from a wide prior: ``(2 pi tau^2)^(k/2) N(z; b, C_tau)``.

    ``C_tau = tau^2 A A^T + Sigma``; the O(tau^-2) error is removed by Richardson extrapolation.
    """
    k = a.shape[1]

    def wide(t):
        return (0.5 * k * math.log(2 * math.pi * t**2)
                + dense_cholesky_log_prob(z, t * a, b, log_var))

    return (4 * wide(2 * tau) - wide(tau)) / 3


def dense_elbo(z, a, b, log_var):
    """``log N(mu; 0, I) - tr(Lambda^-1) / 2 + log Z`` from dense pieces."""
    mu = weighted_least_squares(z, a, b, log_var)
    lam = a.T @ np.diag(np.exp(-log_var)) @ a
    return (stats.multivariate_normal(np.zeros(a.shape[1]), np.eye(a.shape[1])).logpdf(mu)
            - 0.5 * np.trace(np.linalg.inv(lam)) + dense_log_partition(z, a, b, log_var))


def log_gauss(z, mean, log_var):
    """Diagonal Gaussian log density over the last axis."""
    return -0.5 * np.sum(np.log(2 * np.pi) + log_var + (z - mean) ** 2 * np.exp(-log_var), -1)


def as_jax(*arrays):
    return tuple(jnp.asarray(x) for x in arrays)


@pytest.mark.parametrize("d,k", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_log_prob_matches_dense_gaussian(d, k, seed):
    z, a, b, log_var = random_nif(100 * d + 10 * k + seed, d, k)
    got = wb.log_prob(*as_jax(z, a, b, log_var))
    assert got.shape == (len(z),)
    np.testing.assert_allclose(got, dense_log_prob(z, a, b, log_var), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got, dense_cholesky_log_prob(z, a, b, log_var), rtol=1e-10,
                               atol=1e-10)


def test_blocks_broadcast_like_independent_heads():
    """Leading axes are independent blocks; A, b, log_var broadcast against z."""
    rng = np.random.default_rng(5)
    blocks, d, k, batch = 3, 5, 2, 6
    a = rng.standard_normal((blocks, d, k))
    b = rng.standard_normal((blocks, d))
    log_var = rng.uniform(-1, 1, (blocks, d))
    z = rng.standard_normal((batch, blocks, d))
    got_lp = wb.log_prob(*as_jax(z, a, b, log_var))
    got_lz = wb.log_partition(*as_jax(z, a, b, log_var))
    got_mu, _ = wb.posterior(*as_jax(z, a, b, log_var))
    got_elbo = wb.elbo(*as_jax(z, a, b, log_var))
    assert got_lp.shape == got_lz.shape == got_elbo.shape == (batch, blocks)
    assert got_mu.shape == (batch, blocks, k)
    for j in range(blocks):
        np.testing.assert_allclose(got_lp[:, j], dense_log_prob(z[:, j], a[j], b[j], log_var[j]),
                                   rtol=1e-10)
        np.testing.assert_allclose(got_lz[:, j],
                                   dense_log_partition(z[:, j], a[j], b[j], log_var[j]), rtol=1e-6)
        np.testing.assert_allclose(got_mu[:, j],
                                   weighted_least_squares(z[:, j], a[j], b[j], log_var[j]),
                                   rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(got_elbo[:, j], dense_elbo(z[:, j], a[j], b[j], log_var[j]),
                                   rtol=1e-6)
    # a single shared (d, k) A against a batch of blocks with a shared log_var
    shared = wb.log_prob(*as_jax(z, a[0], b[0], log_var[0]))
    np.testing.assert_allclose(shared[:, 1], dense_log_prob(z[:, 1], a[0], b[0], log_var[0]),
                               rtol=1e-10)


@pytest.mark.parametrize("blocks", [1, 2, 3])
def test_posterior_trace_of_a_batch_of_factors(blocks):
    """One factor per block, including as many blocks as latent dimensions (k = 3)."""
    rng = np.random.default_rng(blocks)
    m = rng.standard_normal((blocks, 3, 3))
    lam = m @ m.transpose(0, 2, 1) + np.eye(3)
    got = wb.posterior_trace(jnp.asarray(np.linalg.cholesky(lam)))
    assert got.shape == (blocks,)
    np.testing.assert_allclose(got, np.trace(np.linalg.inv(lam), axis1=1, axis2=2), rtol=1e-10)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(0.05, 20.0),
       log_var_low=st.floats(-6.0, 2.0), spread=st.floats(0.0, 4.0))
def test_closed_forms_and_bound_hold_for_any_parameters(seed, scale, log_var_low, spread):
    z, a, b, log_var = random_nif(seed, 5, 2, log_var_range=(log_var_low, log_var_low + spread))
    a = scale * a
    lp = np.asarray(wb.log_prob(*as_jax(z, a, b, log_var)))
    np.testing.assert_allclose(lp, dense_log_prob(z, a, b, log_var), rtol=1e-8, atol=1e-8)
    elbo = np.asarray(wb.elbo(*as_jax(z, a, b, log_var)))
    assert np.all(elbo < lp)


def _kl_q_to_exact_posterior(z, a, b, log_var):
    """KL(q(u|z) || p(u|z)) with q = N(mu, Lambda^-1) and p(u|z) = N(m, (I + Lambda)^-1)."""
    k = a.shape[1]
    lam = a.T @ np.diag(np.exp(-log_var)) @ a
    prec = np.eye(k) + lam
    mu = weighted_least_squares(z, a, b, log_var)
    m = np.linalg.solve(prec, (a.T @ np.diag(np.exp(-log_var)) @ (z - b).T)).T
    lam_inv = np.linalg.inv(lam)
    diff = m - mu
    return 0.5 * (np.trace(prec @ lam_inv) + np.einsum("bi,ij,bj->b", diff, prec, diff) - k
                  - np.linalg.slogdet(prec)[1] + np.linalg.slogdet(lam)[1])


@pytest.mark.parametrize("d,k", SHAPES)
def test_elbo_is_below_log_prob_by_the_posterior_kl(d, k):
    z, a, b, log_var = random_nif(7 + d + k, d, k)
    lp = wb.log_prob(*as_jax(z, a, b, log_var))
    elbo = wb.elbo(*as_jax(z, a, b, log_var))
    gap = np.asarray(lp - elbo)
    assert np.all(gap > 0)  # q ignores the prior, so the bound is never tight
    np.testing.assert_allclose(gap, _kl_q_to_exact_posterior(z, a, b, log_var), rtol=1e-8,
                               atol=1e-10)


def test_monte_carlo_marginal_converges_to_closed_form():
    d, k, n = 5, 2, 200_000
    z, a, b, log_var = random_nif(11, d, k, log_var_range=(-0.5, 0.5))
    rng = np.random.default_rng(12)
    u = rng.standard_normal((n, k))
    log_w = log_gauss(z[:, None, :], (u @ a.T + b)[None], log_var)  # (batch, n)
    estimate = special.logsumexp(log_w, axis=1) - math.log(n)
    w = np.exp(log_w - log_w.max(1, keepdims=True))
    std_err = w.std(1) / (w.mean(1) * math.sqrt(n))  # delta method for log of a mean
    closed = np.asarray(wb.log_prob(*as_jax(z, a, b, log_var)))
    assert np.all(std_err < 0.02)
    assert np.all(np.abs(estimate - closed) < 5 * std_err + 1e-3), (estimate, closed, std_err)


def _linear_flow_case(seed=21, d=4):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d)) + 2.5 * np.eye(d)  # well conditioned, invertible
    b = rng.standard_normal(d)
    z = b + 2 * rng.standard_normal((6, d))
    u = np.linalg.solve(a, (z - b).T).T
    expected = stats.multivariate_normal(np.zeros(d), np.eye(d)).logpdf(u) - np.linalg.slogdet(a)[1]
    return z, a, b, expected


def test_full_rank_vanishing_noise_is_a_linear_flow():
    z, a, b, expected = _linear_flow_case()
    log_var = np.full(len(b), -20.0)
    got = wb.log_prob(*as_jax(z, a, b, log_var))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # and the approach is visible: at log_var = -6 the noise still matters
    far = wb.log_prob(*as_jax(z, a, b, np.full(len(b), -6.0)))
    assert np.max(np.abs(far - expected)) > 1e-3


def test_full_rank_tiny_noise_is_a_linear_flow_without_cancellation():
    z, a, b, expected = _linear_flow_case()
    for lv in (-30.0, -40.0):
        got = wb.log_prob(*as_jax(z, a, b, np.full(len(b), lv)))
        np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("d,k", SHAPES)
def test_posterior_mean_is_the_weighted_pseudo_inverse(d, k):
    z, a, b, log_var = random_nif(31 + d, d, k)
    mu, chol = wb.posterior(*as_jax(z, a, b, log_var))
    np.testing.assert_allclose(mu, weighted_least_squares(z, a, b, log_var), rtol=1e-9, atol=1e-10)
    lam = a.T @ np.diag(np.exp(-log_var)) @ a
    np.testing.assert_allclose(chol @ chol.T, lam, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(wb.posterior_trace(chol), np.trace(np.linalg.inv(lam)),
                               rtol=1e-10)
    # scaling Sigma leaves the mean alone ...
    for shift in (-3.0, 2.0):
        mu_scaled, _ = wb.posterior(*as_jax(z, a, b, log_var + shift))
        np.testing.assert_allclose(mu_scaled, mu, rtol=1e-9, atol=1e-10)
    # ... re-weighting it does not (unless k = D: then mu = A^-1 (z - b) whatever Sigma)
    mu_reweighted, _ = wb.posterior(*as_jax(z, a, b, log_var + np.linspace(-2, 2, d)))
    assert (k == d) == np.allclose(mu_reweighted, mu, rtol=1e-8, atol=1e-9)
    # points on the manifold are recovered exactly
    u = np.random.default_rng(d).standard_normal((4, k))
    mu_on, _ = wb.posterior(*as_jax(u @ a.T + b, a, b, log_var))
    np.testing.assert_allclose(mu_on, u, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("d,k", SHAPES)
def test_log_partition_matches_wide_prior_limit(d, k):
    z, a, b, log_var = random_nif(41 + d, d, k)
    got = wb.log_partition(*as_jax(z, a, b, log_var))
    np.testing.assert_allclose(got, dense_log_partition(z, a, b, log_var), rtol=1e-6, atol=1e-6)
    # the closed form's pieces: change of volume plus distance to the manifold
    mu = weighted_least_squares(z, a, b, log_var)
    lam = a.T @ np.diag(np.exp(-log_var)) @ a
    by_parts = (log_gauss(z, mu @ a.T + b, log_var) + 0.5 * k * math.log(2 * math.pi)
                - 0.5 * np.linalg.slogdet(lam)[1])
    np.testing.assert_allclose(got, by_parts, rtol=1e-10, atol=1e-10)


def test_log_partition_matches_quadrature_for_one_latent():
    z, a, b, log_var = random_nif(51, 6, 1)
    got = np.asarray(wb.log_partition(*as_jax(z, a, b, log_var)))
    for i in range(len(z)):
        mu = weighted_least_squares(z[i:i + 1], a, b, log_var)[0, 0]

        def integrand(u, zi=z[i]):
            return math.exp(log_gauss(zi, a[:, 0] * u + b, log_var))

        value, _ = integrate.quad(integrand, mu - 60, mu + 60, points=[mu], epsabs=0,
                                  epsrel=1e-12, limit=200)
        np.testing.assert_allclose(got[i], math.log(value), rtol=1e-8, atol=1e-8)


def test_elbo_matches_monte_carlo_over_the_stochastic_inverse():
    d, k, n = 5, 2, 50_000
    z, a, b, log_var = random_nif(61, d, k)
    mu, chol = wb.posterior(*as_jax(z, a, b, log_var))
    u = np.asarray(wb.sample_posterior(rng_key(0), mu, chol, n))  # (n, batch, k)
    assert u.shape == (n, len(z), k)
    # the draws follow q = N(mu, Lambda^-1) ...
    lam_inv = np.linalg.inv(a.T @ np.diag(np.exp(-log_var)) @ a)
    np.testing.assert_allclose(u.mean(0), mu, atol=5 * math.sqrt(lam_inv.max() / n))
    for i in range(len(z)):
        np.testing.assert_allclose(np.cov(u[:, i].T), lam_inv, rtol=0.03, atol=0.03 * lam_inv.max())
    # ... and E_q[log p(u) + log p(z|u) - log q(u|z)] is the closed-form ELBO
    log_q = stats.multivariate_normal(np.zeros(k), lam_inv).logpdf(u - np.asarray(mu)[None])
    terms = (log_gauss(u, 0.0, np.zeros(k)) + log_gauss(z[None], u @ a.T + b, log_var) - log_q)
    closed = np.asarray(wb.elbo(*as_jax(z, a, b, log_var)))
    std_err = terms.std(0) / math.sqrt(n)
    assert np.all(np.abs(terms.mean(0) - closed) < 5 * std_err + 1e-9)


def test_generate_scales_noise_and_lies_on_the_manifold_at_zero():
    z, a, b, log_var = random_nif(71, 5, 2)
    rng = np.random.default_rng(72)
    u, noise = rng.standard_normal((6, 2)), rng.standard_normal((6, 5))
    on = wb.generate(*as_jax(u, a, b, log_var, noise), s=0.0)
    np.testing.assert_allclose(on, u @ a.T + b, rtol=1e-12)
    for s in (0.5, 2.0):
        off = wb.generate(*as_jax(u, a, b, log_var, noise), s=s)
        np.testing.assert_allclose(off - on, s * np.exp(0.5 * log_var) * noise, atol=1e-12)
