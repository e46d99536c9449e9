"""Prior heads and NIF layers: GaussianNIFHead, UpsampleNIF, StochasticCoupling, DeepNIFHead.

References are dense (the D x D covariance, per-pixel blocks, numerical integration) and the
probabilistic-PCA maximum likelihood (Tipping & Bishop 1999) in closed form.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special, stats

from nif_zoo.heads import woodbury
from nif_zoo.heads.deep_nif import DeepNIFHead
from nif_zoo.heads.nif import GaussianNIFHead
from nif_zoo.layers.nif_coupling import StochasticCoupling
from nif_zoo.layers.nif_upsample import UpsampleNIF

# LLVM's optimisation passes are most of XLA:CPU's compile time, and these programs are tiny and
# run once: compile them without (same HLO, same arithmetic; about twice as fast to compile).
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def rng_key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")  # compiles far faster than threefry on CPU


def compiled(fn):
    """``fn()`` (closing over bound modules and arrays) as one compiled program."""
    return fast_jit(fn)()


def perturb(params, seed: int, scale: float = 0.1):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda p: (p + scale * rng.standard_normal(p.shape)).astype(p.dtype), params)


def dense_log_prob(z, a, b, var):
    return stats.multivariate_normal(b, a @ a.T + np.diag(var)).logpdf(z)


def dense_log_partition(z, a, b, log_var):
    """``log ∫ N(z; A u + b, Sigma) du`` by weighted least squares and a Gaussian integral."""
    k = a.shape[-1]
    w = np.exp(-0.5 * log_var)
    mu = np.linalg.lstsq(a * w[:, None], ((z - b) * w).T, rcond=None)[0].T
    lam = a.T @ (a * np.exp(-log_var)[:, None])
    off = z - b - mu @ a.T
    return (-0.5 * np.sum(np.log(2 * np.pi) + log_var + off**2 * np.exp(-log_var), -1)
            + 0.5 * k * math.log(2 * math.pi) - 0.5 * np.linalg.slogdet(lam)[1]), mu


def dense_elbo(z, a, b, log_var):
    log_z, mu = dense_log_partition(z, a, b, log_var)
    k = a.shape[-1]
    lam_inv = np.linalg.inv(a.T @ (a * np.exp(-log_var)[:, None]))
    return (-0.5 * (k * math.log(2 * math.pi) + np.sum(mu**2, -1)) - 0.5 * np.trace(lam_inv)
            + log_z)


# GaussianNIFHead --------------------------------------------------------------------------

def nif_head(noise="diag", dim=6, latent_dim=2, seed=0):
    head = GaussianNIFHead(dim, latent_dim, noise, param_dtype=jnp.float64)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((5, dim)) * 2.0
    variables = head.init(rng_key(seed), jnp.asarray(z), method="log_prob")
    params = {"a": rng.standard_normal((dim, latent_dim)), "b": rng.standard_normal(dim),
              "log_var": rng.uniform(-1, 0.5, variables["params"]["log_var"].shape)}
    assert jax.tree_util.tree_map(np.shape, params) == jax.tree_util.tree_map(
        np.shape, variables["params"])
    return head, {"params": jax.tree_util.tree_map(jnp.asarray, params)}, z


@pytest.mark.parametrize("noise", ["diag", "isotropic"])
def test_nif_head_matches_dense_gaussian(noise):
    head, variables, z = nif_head(noise)
    p = jax.tree_util.tree_map(np.asarray, variables["params"])
    var = np.broadcast_to(np.exp(p["log_var"]), (6,))
    m = head.bind(variables)
    got = compiled(lambda: dict(log_prob={s: m.log_prob(z, s) for s in (1.0, 0.5, 2.0)},
                                log_partition=m.log_partition(z), encode=m.encode(z),
                                elbo=m.elbo(z)))
    for s, lp in got["log_prob"].items():
        np.testing.assert_allclose(lp, dense_log_prob(z, p["a"], p["b"], s**2 * var), rtol=1e-10)
    log_z, mu = dense_log_partition(z, p["a"], p["b"], np.log(var))
    np.testing.assert_allclose(got["log_partition"], log_z, rtol=1e-10)
    np.testing.assert_allclose(got["encode"], mu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got["elbo"], dense_elbo(z, p["a"], p["b"], np.log(var)), rtol=1e-10)
    assert np.all(got["elbo"] < got["log_prob"][1.0])


def test_nif_head_decode_then_encode_and_noise_scale():
    head, variables, _ = nif_head()
    u = jnp.asarray(np.random.default_rng(3).standard_normal((4, 2)))
    m = head.bind(variables)

    def run():
        on = m.decode(u, None, 0.0)
        return dict(on=on, encoded=m.encode(on), zero=m.decode(u, rng_key(1), 0.0),
                    noisy={s: m.decode(u, rng_key(1), s) for s in (1.0, 3.0)})

    got = compiled(run)
    on = got["on"]
    np.testing.assert_allclose(got["encoded"], u, rtol=1e-10)
    np.testing.assert_allclose(got["zero"], on)
    sigma = np.exp(0.5 * np.asarray(variables["params"]["log_var"]))
    noise_1 = (got["noisy"][1.0] - on) / sigma
    noise_3 = (got["noisy"][3.0] - on) / (3 * sigma)
    np.testing.assert_allclose(noise_3, noise_1, rtol=1e-9)
    assert np.all(np.abs(noise_1) > 0)


def test_nif_head_rejects_unknown_noise():
    head = GaussianNIFHead(4, 2, "full")
    with pytest.raises(ValueError, match="noise"):
        head.init(rng_key(0), jnp.zeros((1, 4)), method="log_prob")


def _ppca_maximum_likelihood(x, k):
    """Tipping & Bishop: top-k eigenvectors; sigma^2 = mean of the discarded eigenvalues."""
    n, d = x.shape
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / n
    eigval, eigvec = np.linalg.eigh(cov)
    eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
    sigma2 = eigval[k:].mean()
    w = eigvec[:, :k] * np.sqrt(eigval[:k] - sigma2)
    c = w @ w.T + sigma2 * np.eye(d)
    total = -0.5 * n * (d * math.log(2 * math.pi) + np.linalg.slogdet(c)[1]
                        + np.trace(np.linalg.solve(c, cov)))
    return total, sigma2, eigvec[:, :k], mean


def test_nif_head_gradient_ascent_reaches_ppca_maximum_likelihood():
    d, k, n = 6, 2, 2000
    rng = np.random.default_rng(2024)
    w_true = 1.5 * rng.standard_normal((d, k))
    x = rng.standard_normal(d) + rng.standard_normal((n, k)) @ w_true.T
    x = x + math.sqrt(0.3) * rng.standard_normal((n, d))
    ml_total, ml_sigma2, ml_basis, ml_mean = _ppca_maximum_likelihood(x, k)

    head = GaussianNIFHead(d, k, noise="isotropic", param_dtype=jnp.float64)
    data = jnp.asarray(x)
    params = head.init(rng_key(0), data[:2], method="log_prob")["params"]
    assert params["log_var"].shape == (1,)

    def total_log_lik(p):
        return jnp.sum(head.apply({"params": p}, data, method="log_prob"))

    steps = 1000
    opt = optax.adam(optax.cosine_decay_schedule(0.05, steps, 0.01))

    @fast_jit
    def fit(p):
        def step(carry, _):
            p, state = carry
            grads = jax.grad(lambda q: -total_log_lik(q) / n)(p)
            updates, state = opt.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), None

        return jax.lax.scan(step, (p, opt.init(p)), None, length=steps)[0][0]

    start = float(total_log_lik(params))
    fitted = fit(params)
    got = float(total_log_lik(fitted))
    assert start < ml_total - 100  # the fit has work to do
    assert got <= ml_total + 1e-6 * abs(ml_total)  # nothing beats the maximum likelihood
    np.testing.assert_allclose(got, ml_total, rtol=1e-8)
    np.testing.assert_allclose(np.exp(fitted["log_var"][0]), ml_sigma2, rtol=1e-5)
    a = np.asarray(fitted["a"])
    np.testing.assert_allclose(a @ np.linalg.pinv(a), ml_basis @ ml_basis.T, atol=1e-5)
    np.testing.assert_allclose(fitted["b"], ml_mean, atol=1e-6)


# UpsampleNIF --------------------------------------------------------------------------------

OUT_SHAPE, IN_CHANNELS = (4, 4, 2), 3


@pytest.fixture(scope="module")
def upsample():
    layer = UpsampleNIF(OUT_SHAPE, IN_CHANNELS, param_dtype=jnp.float64)
    rng = np.random.default_rng(7)
    z = jnp.asarray(rng.standard_normal((4,) + OUT_SHAPE))
    variables = fast_jit(lambda key, z: layer.init(key, z, method="log_prob"))(rng_key(0), z)
    variables = {"params": perturb(variables["params"], 8, scale=0.5)}
    return layer, variables, z


def _dense(layer, variables):
    a = np.asarray(compiled(lambda: layer.apply(variables, method="dense_matrix")))
    p = variables["params"]
    return a, np.asarray(p["b"]).reshape(-1), np.asarray(p["log_var"]).reshape(-1)


def test_upsample_dense_matrix_is_the_decoder(upsample):
    layer, variables, _ = upsample
    a, b, _ = _dense(layer, variables)
    assert a.shape == (math.prod(OUT_SHAPE), 2 * 2 * IN_CHANNELS)
    u = np.random.default_rng(9).standard_normal((3, 2, 2, IN_CHANNELS))
    decoded = compiled(lambda: layer.apply(variables, jnp.asarray(u), None, 0.0, method="decode"))
    assert decoded.shape == (3,) + OUT_SHAPE
    np.testing.assert_allclose(np.asarray(decoded).reshape(3, -1), u.reshape(3, -1) @ a.T + b,
                               rtol=1e-10, atol=1e-12)


def test_upsample_block_closed_forms_match_one_dense_block(upsample):
    layer, variables, z = upsample
    a, b, log_var = _dense(layer, variables)
    zf = np.asarray(z).reshape(len(z), -1)
    dense = dict(log_prob=dense_log_prob(zf, a, b, np.exp(log_var)),
                 log_partition=dense_log_partition(zf, a, b, log_var)[0],
                 elbo=dense_elbo(zf, a, b, log_var))
    one_block = [jnp.asarray(v) for v in (zf, a, b, log_var)]
    m = layer.bind(variables)
    got = compiled(lambda: dict(
        {method: (getattr(m, method)(z), getattr(woodbury, method)(*one_block)) for method in dense},
        encode=(m.encode(z),)))
    for method, expected in dense.items():
        blocks, one = got[method]
        assert blocks.shape == (len(z),)
        np.testing.assert_allclose(blocks, expected, rtol=1e-9, err_msg=method)
        np.testing.assert_allclose(blocks, one, rtol=1e-9, err_msg=method)
    mu = got["encode"][0]
    assert mu.shape == (len(z), 2, 2, IN_CHANNELS)
    np.testing.assert_allclose(np.asarray(mu).reshape(len(z), -1),
                               dense_log_partition(zf, a, b, log_var)[1], rtol=1e-9, atol=1e-12)


def test_upsample_samples_lie_on_the_manifold_at_zero_noise_and_spread_with_s(upsample):
    layer, variables, _ = upsample
    u = jnp.asarray(np.random.default_rng(10).standard_normal((5, 2, 2, IN_CHANNELS)))
    m = layer.bind(variables)

    def distance_to_manifold(z):
        projected = m.decode(m.encode(z), None, 0.0)
        return jnp.sqrt(jnp.sum((z - projected) ** 2, axis=(1, 2, 3)))

    def run():
        on = m.decode(u, rng_key(3), 0.0)
        return on, m.encode(on), [distance_to_manifold(m.decode(u, rng_key(3), s))
                                  for s in (0.0, 0.5, 1.0, 2.0)]

    on, encoded, (distance_on, *spreads) = compiled(run)
    np.testing.assert_allclose(encoded, u, rtol=1e-9)
    np.testing.assert_allclose(distance_on, 0.0, atol=1e-10)
    assert np.all(spreads[0] > 1e-3)
    np.testing.assert_allclose(spreads[1], 2 * spreads[0], rtol=1e-9)  # the residual is linear in s
    np.testing.assert_allclose(spreads[2], 4 * spreads[0], rtol=1e-9)


def test_upsample_rejects_bad_shapes(upsample):
    layer, variables, z = upsample
    with pytest.raises(ValueError, match=r"\(4, 4, 2\)"):
        layer.apply(variables, jnp.zeros((2, 4, 4, 3)), method="log_prob")
    with pytest.raises(ValueError, match="UpsampleNIF expects"):
        layer.apply(variables, jnp.zeros((4, 4, 2)), method="log_prob")
    with pytest.raises(ValueError, match="in_channels"):
        UpsampleNIF((4, 4, 2), 8).init(rng_key(0), z, method="log_prob")
    with pytest.raises(ValueError, match="even"):
        UpsampleNIF((3, 4, 2), 3).init(rng_key(0), z[:, :3], method="log_prob")


# StochasticCoupling -------------------------------------------------------------------------

KEEP, C_B, K_B = 2, 3, 2


@pytest.fixture(scope="module")
def coupling():
    layer = StochasticCoupling(keep=KEEP, latent_channels=K_B, hidden=8)
    x = jnp.asarray(np.random.default_rng(11).standard_normal((2, 3, 3, KEEP + C_B)))
    variables = fast_jit(layer.init)(rng_key(0), x)
    variables = {"params": perturb(variables["params"], 12, scale=0.2)}
    return layer, variables, x


def _conditional_gaussian(layer, variables, x):
    """Per-pixel ``(A, b, log_var)`` from the captured network output and the base values."""
    _, state = compiled(lambda: layer.apply(variables, x,
                                            capture_intermediates=lambda m, _: m.name == "net"))
    out = np.asarray(state["intermediates"]["net"]["__call__"][0])
    p = variables["params"]
    a = np.asarray(p["base_a"]) + out[..., : C_B * K_B].reshape(out.shape[:-1] + (C_B, K_B))
    b = out[..., C_B * K_B: C_B * K_B + C_B]
    log_var = out[..., C_B * K_B + C_B:] + np.asarray(p["base_log_var"])
    return a, b, log_var


def test_stochastic_coupling_log_partition_is_the_per_pixel_dense_sum(coupling):
    layer, variables, x = coupling
    a, b, log_var = _conditional_gaussian(layer, variables, x)
    # the reconstruction of (A, b) agrees with the layer's own generator
    x_a = x[..., :KEEP]
    m = layer.bind(variables)
    basis = [jnp.zeros(x.shape[:-1] + (K_B,))] + [
        jnp.zeros(x.shape[:-1] + (K_B,)).at[..., j].set(1.0) for j in range(K_B)]
    generated, (out, log_z) = compiled(lambda: (
        [m.generate(jnp.concatenate([x_a, e], -1), C_B, s=0.0)[..., KEEP:] for e in basis],
        m.forward_and_log_partition(x)))
    np.testing.assert_allclose(generated[0], b, rtol=1e-10, atol=1e-12)
    for j in range(K_B):
        np.testing.assert_allclose(generated[j + 1] - generated[0], a[..., j], rtol=1e-10,
                                   atol=1e-12)

    assert out.shape == x.shape[:-1] + (KEEP + K_B,) and log_z.shape == (len(x),)
    np.testing.assert_array_equal(out[..., :KEEP], x_a)
    x_b = np.asarray(x[..., KEEP:])
    expected = np.zeros(len(x))
    for n, i, j in np.ndindex(*x.shape[:3]):
        lz, mu = dense_log_partition(x_b[n, i, j][None], a[n, i, j], b[n, i, j], log_var[n, i, j])
        expected[n] += lz[0]
        np.testing.assert_allclose(out[n, i, j, KEEP:], mu[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(log_z, expected, rtol=1e-10)


def test_stochastic_coupling_generation_at_zero_noise_inverts_the_posterior_mean(coupling):
    layer, variables, x = coupling
    m = layer.bind(variables)

    def run():
        out, log_z = m.forward_and_log_partition(x)
        regenerated = m.generate(out, C_B, s=0.0)
        noisy = [m.generate(out, C_B, rng_key(4), s)[..., KEEP:] for s in (1.0, 2.0)]
        return out, log_z, regenerated, m.forward_and_log_partition(regenerated), noisy

    out, log_z, regenerated, (out_again, log_z_again), noisy = compiled(run)
    assert regenerated.shape == x.shape
    np.testing.assert_array_equal(regenerated[..., :KEEP], x[..., :KEEP])
    assert not np.allclose(regenerated, x)  # x was off the manifold ...
    np.testing.assert_allclose(out_again, out, rtol=1e-9, atol=1e-12)  # ... its projection is not
    assert np.all(log_z_again > log_z)  # on the manifold the distance term vanishes
    # noise is added along sigma and linearly in s
    np.testing.assert_allclose(noisy[1] - regenerated[..., KEEP:],
                               2 * (noisy[0] - regenerated[..., KEEP:]), rtol=1e-9, atol=1e-12)


def test_stochastic_coupling_samples_the_stochastic_inverse(coupling):
    layer, variables, x = coupling
    m = layer.bind(variables)
    mean_out, draws = compiled(lambda: (m.forward_and_log_partition(x)[0], jnp.stack(
        [m.forward_and_log_partition(x, rng_key(s))[0] for s in range(3)])))
    for draw in draws:
        np.testing.assert_array_equal(draw[..., :KEEP], x[..., :KEEP])
    assert not np.allclose(draws[0], draws[1])
    assert not np.allclose(draws[0], mean_out)


def test_stochastic_coupling_rejects_bad_latent_channels():
    x = jnp.zeros((1, 2, 2, 5))
    with pytest.raises(ValueError, match="latent_channels"):
        StochasticCoupling(keep=2, latent_channels=3, hidden=4).init(rng_key(0), x)


# DeepNIFHead --------------------------------------------------------------------------------

def test_deep_nif_iwae_tightens_with_k_and_stays_below_log_p():
    dim, k, reps, n = 6, 2, 200, 100_000
    head = DeepNIFHead(dim, k, prior_layers=2, prior_hidden=8)
    rng = np.random.default_rng(13)
    z = jnp.asarray(rng.standard_normal((4, dim)) * 1.5)
    variables = fast_jit(head.init)(rng_key(0), jnp.asarray(rng.standard_normal((64, dim)) * 1.5))
    params = perturb(variables["params"], 14, scale=0.3)
    # wide noise: q(u|z) = N(mu, Lambda^-1) is then far from p(u|z), so the bounds differ
    params["nif"]["log_var"] = params["nif"]["log_var"] + 1.5
    variables = {"params": params}
    z_rep = jnp.tile(z, (reps, 1))  # independent posterior draws per repetition

    @fast_jit
    def evaluate(variables):
        def bound(zs, num_samples, iwae, seed):
            return head.apply(variables, zs, rng_key(seed), num_samples, iwae, method="bound")

        # u from the flow prior itself, for log p(z) = log E_{u ~ p(u)} N(z; A u + b, Sigma)
        u = head.apply(variables, rng_key(5), n, 1.0, jnp.float64, method="sample_latent")
        return (bound(z_rep, 1, False, 1), bound(z_rep, 10, True, 2), bound(z_rep, 100, True, 3),
                bound(z, 20_000, True, 6), u)

    elbo, iwae_10, iwae_100, iwae_many, u = (np.asarray(v) for v in evaluate(variables))
    elbo, iwae_10, iwae_100 = (v.reshape(reps, len(z)) for v in (elbo, iwae_10, iwae_100))
    p = variables["params"]["nif"]
    a, b, log_var = (np.asarray(p[name], np.float64) for name in ("a", "b", "log_var"))
    log_w = -0.5 * np.sum(np.log(2 * np.pi) + log_var
                          + (np.asarray(z)[:, None] - u @ a.T - b) ** 2 * np.exp(-log_var), -1)
    log_p = special.logsumexp(log_w, axis=1) - math.log(n)
    w = np.exp(log_w - log_w.max(1, keepdims=True))
    log_p_err = 5 * w.std(1) / (w.mean(1) * math.sqrt(n))

    means = [v.mean(0) for v in (elbo, iwae_10, iwae_100)]
    errs = [5 * v.std(0) / math.sqrt(reps) for v in (elbo, iwae_10, iwae_100)]
    assert np.mean(means[0]) < np.mean(means[1]) < np.mean(means[2])  # on average over z
    assert np.all(means[0] < means[1] + errs[0] + errs[1])  # per point, statistically
    assert np.all(means[1] < means[2] + errs[1] + errs[2])
    assert np.all(means[2] < log_p + errs[2] + log_p_err)
    assert np.all(log_p - means[0] > 0.1)  # a real gap, so the ordering means something
    # with many samples the IWAE bound reaches log p(z)
    assert np.all(np.abs(iwae_many - log_p) < 0.01 + log_p_err), (iwae_many, log_p, log_p_err)
