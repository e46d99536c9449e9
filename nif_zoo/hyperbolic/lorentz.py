"""The Lorentz (hyperboloid) model of hyperbolic space with radius R (curvature -1/R^2).

A point of H^n is an array of n + 1 ambient coordinates ``x`` with ``<x, x>_L = -R^2`` and
``x0 > 0``; the origin is ``o = (R, 0, ..., 0)``. Tangent vectors at ``o`` have ``u0 = 0`` and are
passed as their n spatial coordinates ("tangent coordinates"). ``radius`` is a float or a scalar
array (a learned radius); every function maps over leading axes.

The formulas avoid the cancellation in ``<x, y>_L`` where they can: distances and log maps go
through the Lorentz norm of ``y - x``, and maps from the origin use ``asinh`` of the spatial norm.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

SERIES_BELOW = 1e-2  # below this argument the Taylor series are exact to float64 precision


def inner(x: jax.Array, y: jax.Array) -> jax.Array:
    """``<x, y>_L = -x0 y0 + sum_i xi yi`` over the last axis."""
    return jnp.sum(x[..., 1:] * y[..., 1:], -1) - x[..., 0] * y[..., 0]


def safe_sqrt(a: jax.Array) -> jax.Array:
    """``sqrt(max(a, 0))`` with a zero gradient at 0 (where the true one is infinite)."""
    positive = a > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, a, 1.0)), 0.0)


def euclidean_norm(v: jax.Array) -> jax.Array:
    return safe_sqrt(jnp.sum(v * v, -1))


def norm(u: jax.Array) -> jax.Array:
    """Lorentz norm ``sqrt(<u, u>_L)`` of tangent vectors (clamped at 0 against round-off)."""
    return safe_sqrt(inner(u, u))


def sinhc(r: jax.Array) -> jax.Array:
    """``sinh(r) / r``, 1 at 0."""
    small = r < SERIES_BELOW
    safe = jnp.where(small, 1.0, r)
    r2 = r * r
    return jnp.where(small, 1.0 + r2 / 6.0 + r2 * r2 / 120.0, jnp.sinh(safe) / safe)


def log_sinhc(r: jax.Array) -> jax.Array:
    """``log(sinh(r) / r)`` for ``r >= 0`` without overflow: the exp map's volume factor per dim."""
    small = r < SERIES_BELOW
    safe = jnp.where(small, 1.0, r)
    r2 = r * r
    series = r2 / 6.0 - r2 * r2 / 180.0
    return jnp.where(small, series, safe + jnp.log(-jnp.expm1(-2.0 * safe)) - np.log(2.0) - jnp.log(safe))


def asinhc(s: jax.Array) -> jax.Array:
    """``asinh(s) / s``, 1 at 0."""
    small = s < SERIES_BELOW
    safe = jnp.where(small, 1.0, s)
    s2 = s * s
    return jnp.where(small, 1.0 - s2 / 6.0 + 3.0 * s2 * s2 / 40.0, jnp.arcsinh(safe) / safe)


def origin(n: int, radius, dtype=jnp.float32) -> jax.Array:
    return jnp.zeros(n + 1, dtype).at[0].set(radius)


def project(x: jax.Array, radius) -> jax.Array:
    """The point of H^n with the spatial coordinates of ``x`` (``x0`` recomputed)."""
    spatial = x[..., 1:]
    x0 = jnp.sqrt(radius**2 + jnp.sum(spatial * spatial, -1, keepdims=True))
    return jnp.concatenate([x0, spatial], -1)


def lift(spatial: jax.Array, radius) -> jax.Array:
    """The point of H^n whose spatial coordinates are ``spatial`` (n of them)."""
    return project(jnp.concatenate([jnp.zeros_like(spatial[..., :1]), spatial], -1), radius)


def project_tangent(x: jax.Array, v: jax.Array, radius) -> jax.Array:
    """Orthogonal projection of an ambient vector onto the tangent space at ``x``."""
    return v + (inner(x, v) / radius**2)[..., None] * x


def distance(x: jax.Array, y: jax.Array, radius) -> jax.Array:
    """Geodesic distance ``R arccosh(-<x, y>_L / R^2) = 2 R asinh(|y - x|_L / 2R)``."""
    return 2.0 * radius * jnp.arcsinh(norm(y - x) / (2.0 * radius))


def exp_map(x: jax.Array, u: jax.Array, radius, u_norm: jax.Array | None = None) -> jax.Array:
    """``exp_x(u) = cosh(r) x + sinh(r) / r u`` with ``r = |u|_L / R``.

    ``u_norm`` (``|u|_L``, when the caller knows it exactly, e.g. after a parallel transport)
    replaces the norm computed from ``u``, which loses precision far from the origin.
    """
    r = (norm(u) if u_norm is None else u_norm) / radius
    return jnp.cosh(r)[..., None] * x + sinhc(r)[..., None] * u


def log_map(x: jax.Array, y: jax.Array, radius) -> jax.Array:
    """``log_x(y) = arccosh(a) / sqrt(a^2 - 1) (y - a x)``, ``a = -<x, y>_L / R^2``.

    Written with ``a - 1 = |y - x|_L^2 / 2R^2`` and ``arccosh(a) = 2 asinh(|y - x|_L / 2R)``.
    """
    chord = norm(y - x) / radius
    theta = 2.0 * jnp.arcsinh(chord / 2.0)
    a_minus_1 = chord**2 / 2.0
    return ((y - x) - a_minus_1[..., None] * x) / sinhc(theta)[..., None]


def exp_origin(v: jax.Array, radius) -> jax.Array:
    """``exp_o`` of tangent coordinates ``v`` (n numbers) at the origin: a point of H^n."""
    r = euclidean_norm(v) / radius
    return jnp.concatenate([(radius * jnp.cosh(r))[..., None], sinhc(r)[..., None] * v], -1)


def log_origin(x: jax.Array, radius) -> jax.Array:
    """``log_o(x)`` as tangent coordinates: ``R asinh(|xs| / R) xs / |xs|`` (xs: spatial part)."""
    spatial = x[..., 1:]
    return asinhc(euclidean_norm(spatial) / radius)[..., None] * spatial


def parallel_transport(x: jax.Array, y: jax.Array, v: jax.Array, radius) -> jax.Array:
    """``PT_{x->y}(v) = v + <y, v>_L / (R^2 - <x, y>_L) (x + y)`` along the geodesic."""
    coefficient = inner(y, v) / (radius**2 - inner(x, y))
    return v + coefficient[..., None] * (x + y)


def transport_from_origin(mu: jax.Array, v: jax.Array, radius) -> jax.Array:
    """``PT_{o->mu}((0, v))`` for tangent coordinates ``v``: an ambient tangent vector at ``mu``."""
    coefficient = jnp.sum(mu[..., 1:] * v, -1) / (radius * (radius + mu[..., 0]))
    lifted = jnp.concatenate([jnp.zeros_like(v[..., :1]), v], -1)
    o_plus_mu = mu.at[..., 0].add(radius)
    return lifted + coefficient[..., None] * o_plus_mu


def transport_to_origin(mu: jax.Array, u: jax.Array, radius) -> jax.Array:
    """``PT_{mu->o}(u)`` as tangent coordinates at the origin (the inverse of the above)."""
    coefficient = -u[..., 0] / (radius + mu[..., 0])
    return u[..., 1:] + coefficient[..., None] * mu[..., 1:]


def to_poincare(x: jax.Array, radius) -> jax.Array:
    """The Poincare-ball coordinates ``R xs / (R + x0)`` (inside the ball of radius R)."""
    return radius * x[..., 1:] / (radius + x[..., :1])


def manifold_residual(x, radius) -> np.ndarray:
    """``|<x, x>_L + R^2| / (R^2 + |x|^2)`` per point: 0 on the hyperboloid, relative to scale."""
    x = np.asarray(x, np.float64)
    radius = float(radius)
    lorentz = np.sum(x[..., 1:] ** 2, -1) - x[..., 0] ** 2
    return np.abs(lorentz + radius**2) / (radius**2 + np.sum(x**2, -1))


def check_on_manifold(x, radius, atol: float = 1e-5) -> None:
    """Raises ValueError unless every row of ``x`` lies on H^n of radius ``radius``.

    ``atol`` bounds the relative residual (see ``manifold_residual``); the default suits float32.
    """
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[-1] < 2:
        raise ValueError(f"points of H^n need n + 1 >= 2 ambient coordinates on the last axis, "
                         f"got shape {x.shape}")
    residual = manifold_residual(x, radius)
    below = np.asarray(x[..., 0]) <= 0
    if np.any(below):
        index = tuple(int(i) for i in np.argwhere(below)[0])
        raise ValueError(f"point {index} has x0 = {float(x[index + (0,)]):.4g} <= 0: it is on the "
                         "lower sheet, not on H^n (x0 > 0). Map points on with "
                         "nif_zoo.hyperbolic.lorentz.project(x, radius).")
    if not np.all(residual <= atol):
        index = tuple(int(i) for i in np.argwhere(~(residual <= atol))[0])
        raise ValueError(
            f"point {index} is off the hyperboloid of radius {float(radius):.4g}: "
            f"|<x,x>_L + R^2| / (R^2 + |x|^2) = {float(residual[index]):.3g} > atol={atol:g}. "
            "Map points on with nif_zoo.hyperbolic.lorentz.project(x, radius), or pass the "
            "radius the points were made with.")


def is_concrete(*arrays) -> bool:
    """True when no argument is being traced (so values can be checked on the host)."""
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)
