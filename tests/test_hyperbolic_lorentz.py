"""Lorentz-model operations: on the manifold, round trips, transport, and the off-manifold error."""

import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nif_zoo.hyperbolic import lorentz as eager

RADII = [1.0, 2.5]
DIMS = [2, 5]
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
# Jitted (cheaply compiled) versions: op-by-op dispatch compiles every primitive and costs more.
lorentz = SimpleNamespace(**{
    name: jax.jit(getattr(eager, name), compiler_options=FAST)
    for name in ("inner", "norm", "lift", "project", "project_tangent", "exp_map", "log_map", "distance",
                 "exp_origin", "log_origin", "parallel_transport", "transport_from_origin",
                 "transport_to_origin", "to_poincare", "log_sinhc")})
for name in ("origin", "manifold_residual", "check_on_manifold", "safe_sqrt"):
    setattr(lorentz, name, getattr(eager, name))


def points(rng, n, radius, count=16, spread=1.5):
    return lorentz.lift(jnp.asarray(rng.normal(size=(count, n)) * spread * radius), radius)


def tangents(rng, x, radius, spread=1.0):
    """Tangent vectors at ``x`` of Lorentz norm about ``spread * radius * sqrt(n)``."""
    v = jnp.asarray(rng.normal(size=x.shape[:-1] + (x.shape[-1] - 1,)) * spread * radius)
    return lorentz.transport_from_origin(x, v, radius)


def on_manifold(x, radius):
    return lorentz.manifold_residual(x, radius).max() < 1e-12


@pytest.mark.parametrize("radius", RADII)
@pytest.mark.parametrize("n", DIMS)
def test_exp_log_round_trip_and_distance(radius, n):
    rng = np.random.default_rng(n)
    x = points(rng, n, radius)
    u = tangents(rng, x, radius)
    assert np.abs(lorentz.inner(x, u)).max() < 1e-10  # u is tangent at x
    y, back, again, dist = _round_trip(x, u, radius)
    assert y.dtype == jnp.float64 and on_manifold(y, radius)
    np.testing.assert_allclose(back, u, atol=1e-9)
    np.testing.assert_allclose(again, y, rtol=1e-8)
    np.testing.assert_allclose(dist, lorentz.norm(u), rtol=1e-10)
    a = -lorentz.inner(x, y) / radius**2  # the textbook form of the distance
    np.testing.assert_allclose(dist, radius * np.arccosh(a), rtol=1e-8)


@functools.partial(jax.jit, compiler_options=FAST)
def _round_trip(x, u, radius):
    y = eager.exp_map(x, u, radius)
    back = eager.log_map(x, y, radius)
    return y, back, eager.exp_map(x, back, radius), eager.distance(x, y, radius)


@pytest.mark.parametrize("radius", RADII)
def test_maps_at_the_origin_match_the_general_ones(radius):
    rng = np.random.default_rng(1)
    n = 4
    v = jnp.asarray(rng.normal(size=(16, n)) * radius)
    o = jnp.broadcast_to(lorentz.origin(n, radius, jnp.float64), (16, n + 1))
    lifted = jnp.concatenate([jnp.zeros((16, 1)), v], -1)
    z = lorentz.exp_origin(v, radius)
    assert on_manifold(z, radius)
    np.testing.assert_allclose(z, lorentz.exp_map(o, lifted, radius), rtol=1e-12)
    np.testing.assert_allclose(lorentz.log_origin(z, radius), v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lorentz.log_map(o, z, radius)[:, 1:], v, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("radius", RADII)
@pytest.mark.parametrize("n", DIMS)
def test_parallel_transport_keeps_the_norm_and_round_trips(radius, n):
    rng = np.random.default_rng(10 + n)
    x, y = points(rng, n, radius), points(rng, n, radius)
    v = tangents(rng, x, radius)
    moved, back = _transport_there_and_back(x, y, v, radius)
    assert np.abs(lorentz.inner(y, moved)).max() < 1e-9  # tangent at y
    np.testing.assert_allclose(lorentz.inner(moved, moved), lorentz.inner(v, v), rtol=1e-9)
    np.testing.assert_allclose(back, v, atol=1e-9)


@functools.partial(jax.jit, compiler_options=FAST)
def _transport_there_and_back(x, y, v, radius):
    moved = eager.parallel_transport(x, y, v, radius)
    return moved, eager.parallel_transport(y, x, moved, radius)


@pytest.mark.parametrize("radius", RADII)
def test_transport_from_and_to_the_origin(radius):
    rng = np.random.default_rng(3)
    n = 3
    mu = points(rng, n, radius)
    v = jnp.asarray(rng.normal(size=(16, n)))
    o = jnp.broadcast_to(lorentz.origin(n, radius, jnp.float64), mu.shape)
    lifted = jnp.concatenate([jnp.zeros((16, 1)), v], -1)
    u = lorentz.transport_from_origin(mu, v, radius)
    np.testing.assert_allclose(u, lorentz.parallel_transport(o, mu, lifted, radius), atol=1e-10)
    np.testing.assert_allclose(lorentz.norm(u), np.linalg.norm(v, axis=-1), rtol=1e-9)
    np.testing.assert_allclose(lorentz.transport_to_origin(mu, u, radius), v, atol=1e-10)


def test_project_and_poincare():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(8, 4)) * 3)
    for radius in RADII:
        z = lorentz.project(x, radius)
        assert on_manifold(z, radius)
        np.testing.assert_array_equal(z[:, 1:], x[:, 1:])
        tangent = lorentz.project_tangent(z, x, radius)
        assert np.abs(lorentz.inner(z, tangent)).max() < 1e-9 * np.abs(tangent).max()
        ball = lorentz.to_poincare(z, radius)
        assert np.all(np.linalg.norm(ball, axis=-1) < radius)


def test_small_norms_have_finite_values_and_gradients():
    radius = 1.3
    v = jnp.zeros((1, 3))
    np.testing.assert_allclose(lorentz.exp_origin(v, radius), [[radius, 0, 0, 0]])
    o = lorentz.origin(3, radius, jnp.float64)[None]
    np.testing.assert_allclose(lorentz.log_map(o, o, radius), 0 * o)
    grads = _gradients_near_zero(v, o, jnp.array([0.0, 1e-4, 1.0, 50.0]), radius)
    assert all(np.all(np.isfinite(g)) for g in grads)
    r = jnp.array([1e-6, 5e-3, 2e-2, 1.0, 30.0, 500.0])
    np.testing.assert_allclose(lorentz.log_sinhc(r)[0], 1e-12 / 6, rtol=1e-12)  # numpy loses digits here
    np.testing.assert_allclose(lorentz.log_sinhc(r)[1:5], np.log(np.sinh(r[1:5]) / r[1:5]), rtol=1e-9)
    np.testing.assert_allclose(lorentz.log_sinhc(r)[5], 500 - np.log(2) - np.log(500), rtol=1e-12)


@functools.partial(jax.jit, compiler_options=FAST)
def _gradients_near_zero(v, o, r, radius):
    return [jax.grad(lambda v: jnp.sum(eager.exp_origin(v, radius) ** 2))(v),
            jax.grad(lambda z: jnp.sum(eager.log_origin(z, radius)))(o),
            jax.grad(lambda y: jnp.sum(eager.log_map(o, y, radius)))(o),
            jax.grad(lambda r: jnp.sum(eager.log_sinhc(r)))(r)]


def test_the_radius_can_be_learned():
    v = jnp.array([[0.3, -1.2]])

    def loss(raw):
        radius = jax.nn.softplus(raw)
        return jnp.sum(eager.log_origin(eager.exp_origin(v, radius) * 1.1, radius))

    assert np.isfinite(jax.jit(jax.grad(loss), compiler_options=FAST)(0.4))


def test_points_off_the_manifold_get_a_clear_error():
    radius = 2.0
    good = np.asarray(lorentz.lift(jnp.ones((3, 2)), radius))
    lorentz.check_on_manifold(good, radius, atol=1e-12)
    off = good.copy()
    off[1, 0] += 0.1
    with pytest.raises(ValueError, match=r"point \(1,\) is off the hyperboloid.*project"):
        lorentz.check_on_manifold(off, radius)
    with pytest.raises(ValueError, match="lower sheet"):
        lorentz.check_on_manifold(-good, radius)
    with pytest.raises(ValueError, match="off the hyperboloid"):
        lorentz.check_on_manifold(good, 1.0)  # right points, wrong radius
    with pytest.raises(ValueError, match="ambient coordinates"):
        lorentz.check_on_manifold(np.ones((3, 1)), radius)
