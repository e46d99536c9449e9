"""Every log-det on H^n against ``1/2 logdet(J^T G J)`` from ``jax.jacfwd`` in a chart.

The chart is ``y -> (sqrt(R^2 + |y|^2), y)``; with ``G`` the Minkowski metric, ``1/2 logdet(J^T G J)``
of ``f . chart`` minus that of the chart is the log-det of ``f`` for the Riemannian volume. Radii
other than 1 are included: the authors' extra ``(n - 1) log R`` term must fail these checks.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nif_zoo.hyperbolic import lorentz, wrapped_normal
from nif_zoo.hyperbolic.couplings import EuclideanCoupling, TangentCoupling, WrappedHyperboloidCoupling

RADII = (1.0, 2.5)
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
fast_jit = functools.partial(jax.jit, compiler_options=FAST)  # these checks run once: compile cheaply
LAYERS = {"tc": TangentCoupling, "whc": WrappedHyperboloidCoupling}


def log_volume(jacobian):
    """``1/2 logdet(J^T G J)`` of an embedding's Jacobian (ambient x chart dimensions)."""
    metric = jnp.diag(jnp.ones(jacobian.shape[0]).at[0].set(-1.0))
    return 0.5 * jnp.linalg.slogdet(jacobian.T @ metric @ jacobian)[1]


def reference_log_det(f, x, radius):
    """Log-det of ``f`` (a point of H^n to a point of H^n) at each row of ``x``."""

    def chart(y):
        return lorentz.lift(y, radius)

    def one(y):
        return log_volume(jax.jacfwd(lambda y: f(chart(y)))(y)) - log_volume(jax.jacfwd(chart)(y))

    return jax.vmap(one)(x[:, 1:])


def random_params(layer, x, seed, scale=0.5):
    """Non-zero weights everywhere (the layers start as the identity), shapes traced, not compiled."""
    shapes = jax.eval_shape(layer.init, jax.random.key(0), x)["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(scale * rng.normal(size=s.shape), s.dtype), shapes)


@functools.partial(fast_jit, static_argnums=(0, 1))
def _layer_checks(kind, parity, params, x, radius):
    layer = LAYERS[kind](radius=radius, hidden=16, parity=parity)

    def apply(points, inverse):
        return layer.apply({"params": params}, points, inverse)

    y, log_det = apply(x, True)
    back, log_det_back = apply(y, False)  # the inverse's log-det follows from the round trip
    return dict(y=y, log_det=log_det, back=back, log_det_back=log_det_back,
                ref=reference_log_det(lambda p: apply(p[None], True)[0][0], x, radius))


@pytest.mark.parametrize("kind, n, parity", [("tc", 3, 1), ("whc", 3, 1), ("whc", 4, 0)])
def test_layer_log_det_matches_autodiff_both_ways(kind, n, parity):
    y = np.random.default_rng(n).normal(size=(6, n))
    layer = LAYERS[kind](radius=1.0, hidden=16, parity=parity)
    params = random_params(layer, lorentz.lift(jnp.asarray(y), 1.0), seed=n + 10 * parity)
    for radius in RADII:
        x = lorentz.lift(jnp.asarray(y * radius), radius)
        out = _layer_checks(kind, parity, params, x, radius)
        assert out["y"].dtype == jnp.float64
        assert lorentz.manifold_residual(out["y"], radius).max() < 1e-12
        assert np.abs(out["log_det"]).min() > 1e-3  # a non-trivial map
        np.testing.assert_allclose(out["log_det"], out["ref"], atol=1e-8)
        np.testing.assert_allclose(out["back"], x, atol=1e-9)
        np.testing.assert_allclose(out["log_det"] + out["log_det_back"], 0.0, atol=1e-9)


def test_euclidean_twin_layer_log_det_matches_autodiff():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)))
    layer = EuclideanCoupling(hidden=16, parity=1)
    params = random_params(layer, x, seed=3)

    @functools.partial(fast_jit, static_argnums=0)
    def checks(inverse, x):
        y, log_det = layer.apply({"params": params}, x, inverse)
        jac = jax.vmap(jax.jacfwd(lambda p: layer.apply({"params": params}, p[None], inverse)[0][0]))(x)
        return log_det, jnp.linalg.slogdet(jac)[1], layer.apply({"params": params}, y, not inverse)[0]

    for inverse in (False, True):
        log_det, reference, back = checks(inverse, x)
        np.testing.assert_allclose(log_det, reference, atol=1e-10)
        np.testing.assert_allclose(back, x, atol=1e-12)


@functools.partial(fast_jit, static_argnums=0)
def _wrapped_normal_checks(n, mu, scale, v, radius):
    def to_point(v):
        return wrapped_normal.from_tangent(mu, v, radius)

    z = jax.vmap(to_point)(v)
    gaussian = wrapped_normal.tangent_log_prob(v, scale, jnp.inf)  # the Gaussian alone
    reference = gaussian - jax.vmap(lambda v: log_volume(jax.jacfwd(to_point)(v)))(v)
    return z, wrapped_normal.tangent_log_prob(v, scale, radius), reference


def test_wrapped_normal_density_matches_autodiff():
    n = 3
    scale = jnp.linspace(0.4, 1.2, n)
    v = jnp.asarray(np.random.default_rng(n).normal(size=(8, n))) * scale
    for radius in (*RADII, 0.6):
        mu = lorentz.exp_origin(jnp.linspace(-0.7, 0.9, n) * radius, radius)
        z, log_p, reference = _wrapped_normal_checks(n, mu, scale, v, radius)
        np.testing.assert_allclose(log_p, reference, atol=1e-9)
        np.testing.assert_allclose(wrapped_normal.log_prob(z, mu, scale, radius), reference, atol=1e-8)
        if radius != 1.0:  # the authors' form is off by (n - 1) log R, and this test sees it
            authors = log_p - (n - 1) * np.log(radius)
            assert np.abs(authors - reference).min() > 0.1


def test_chart_volume_is_r_over_x0():
    """The chart's own volume element, used by the quadrature in test_hyperbolic_wrapped_normal."""
    radius = 1.7
    y = jnp.asarray(np.random.default_rng(0).normal(size=(5, 2)) * 2)
    volume = fast_jit(jax.vmap(lambda y: log_volume(jax.jacfwd(lambda y: lorentz.lift(y, radius))(y))))(y)
    np.testing.assert_allclose(volume, np.log(radius / lorentz.lift(y, radius)[:, 0]), atol=1e-12)


def test_layers_refuse_points_off_the_manifold():
    x = lorentz.lift(jnp.ones((2, 2)), 1.0)
    layer = TangentCoupling(radius=1.0, hidden=8)
    params = {"params": random_params(layer, x, seed=0)}
    with pytest.raises(ValueError, match="off the hyperboloid.*project"):
        layer.apply(params, x.at[0, 0].add(0.5))
    with pytest.raises(ValueError, match="off the hyperboloid"):
        TangentCoupling(radius=2.0, hidden=8).apply(params, x)  # made with another radius
