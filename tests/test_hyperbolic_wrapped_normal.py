"""The wrapped normal: it integrates to 1 on H^2, and sampling agrees with its log-density."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nif_zoo.hyperbolic import lorentz, wrapped_normal

FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@functools.partial(jax.jit, static_argnums=0, compiler_options=FAST)
def _integral(points_per_side, half_width, mu, scale, radius):
    """Trapezoid rule in the chart ``y -> (sqrt(R^2 + |y|^2), y)``, volume element ``R / x0``."""
    grid = jnp.linspace(-half_width, half_width, points_per_side)
    y = jnp.stack(jnp.meshgrid(grid, grid), -1).reshape(-1, 2)
    z = lorentz.lift(y, radius)
    density = jnp.exp(wrapped_normal._log_prob(z, mu, scale, radius)) * radius / z[:, 0]
    cell = (grid[1] - grid[0]) ** 2
    return jnp.sum(density) * cell  # the density at the border is ~0: trapezoid = plain sum


@pytest.mark.parametrize("radius", [1.0, 2.0, 0.7])
def test_integrates_to_one_on_h2(radius):
    mu = lorentz.exp_origin(jnp.array([0.5, -0.3]) * radius, radius)
    scale = jnp.array([0.45, 0.25]) * radius
    # 7 standard deviations from mu, pulled back to the chart
    half_width = radius * np.sinh((0.6 * radius + 7 * 0.45 * radius) / radius)
    total = _integral(801, half_width, mu, scale, radius)
    np.testing.assert_allclose(total, 1.0, atol=2e-4)


def test_samples_lie_on_the_manifold_and_match_log_prob():
    radius = 1.6
    mu = lorentz.exp_origin(jnp.array([[0.4, 1.1, -0.2]]), radius)
    scale = jnp.array([[0.3, 0.8, 1.5]])
    z, log_p = wrapped_normal.sample(jax.random.key(0), mu, scale, radius, (64,))
    assert z.shape == (64, 1, 4) and log_p.shape == (64, 1) and z.dtype == jnp.float64
    assert lorentz.manifold_residual(z, radius).max() < 1e-12
    np.testing.assert_allclose(wrapped_normal.log_prob(z, mu, scale, radius), log_p, atol=1e-8)


def test_at_the_origin_both_routes_agree():
    radius = 0.8
    z = lorentz.lift(jnp.asarray(np.random.default_rng(0).normal(size=(10, 3))), radius)
    o = lorentz.origin(3, radius, jnp.float64)
    scale = jnp.ones(3)
    np.testing.assert_allclose(wrapped_normal.origin_log_prob(z, scale, radius),
                               wrapped_normal.log_prob(z, o, scale, radius), atol=1e-10)


def test_log_prob_refuses_points_off_the_manifold():
    o = lorentz.origin(2, 1.0, jnp.float64)
    with pytest.raises(ValueError, match="off the hyperboloid"):
        wrapped_normal.log_prob(jnp.array([[1.5, 0.2, 0.1]]), o, jnp.ones(2), 1.0)
