"""Coupling layers on H^n (Bose et al. 2020): tangent (TC) and wrapped hyperboloid (WHC).

Both obey the layer contract of ``nif_zoo.layers.base`` on points of H^n given as ``(batch, n + 1)``
ambient coordinates; ``log_det`` is taken with respect to the Riemannian volume of H^n. As in the
authors' code, the *inverse* direction is the sampling one (a posterior flow maps base samples
with ``inverse=True``), the forward one maps back. Each layer works in the tangent coordinates
``v = log_o(x)``: the first ``n // 2`` condition, the rest change; ``parity=1`` swaps the roles
(by reversing ``v``), so alternate parities between layers.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.hyperbolic import lorentz
from nif_zoo.layers.base import Bijector, check_rank, split_channels
from nif_zoo.layers.coupling import FlatAffineCoupling, MLPNet, log_scale_of


def _oriented(v: jax.Array, parity: int) -> jax.Array:
    return v[..., ::-1] if parity else v


def volume_term(v: jax.Array, radius, dim: int) -> jax.Array:
    """``(dim - 1) log(sinh r / r)``, ``r = |v| / R``: log-det of ``exp_o`` at tangent coords v."""
    return (dim - 1) * lorentz.log_sinhc(lorentz.euclidean_norm(v) / radius)


class _OnHyperboloid(nn.Module, Bijector):
    """``exp_o . (a map of tangent coordinates) . log_o`` with the two volume terms."""

    radius: float | jax.Array = 1.0
    hidden: int = 64
    parity: int = 0

    def _tangent_map(self, v: jax.Array, inverse: bool) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: jax.Array, inverse: bool = False):
        check_rank(x, 2, type(self).__name__)
        if lorentz.is_concrete(x, self.radius):
            atol = 1e-10 if x.dtype == jnp.float64 else 1e-5
            lorentz.check_on_manifold(x, self.radius, atol)
        n = x.shape[-1] - 1
        v = _oriented(lorentz.log_origin(x, self.radius), self.parity)
        w, log_det = self._tangent_map(v, inverse)
        log_det = log_det + volume_term(w, self.radius, n) - volume_term(v, self.radius, n)
        return lorentz.exp_origin(_oriented(w, self.parity), self.radius), log_det


class TangentCoupling(_OnHyperboloid):
    """TC: an affine coupling (RealNVP) of the tangent coordinates at the origin."""

    def _tangent_map(self, v, inverse):
        return FlatAffineCoupling(hidden=self.hidden, scale_fn="exp_tanh", name="coupling")(v, inverse)


class WrappedHyperboloidCoupling(_OnHyperboloid):
    """WHC: the changing half ``v2`` (k numbers) moves on its own hyperboloid H^k.

    Sampling direction (``inverse=True``): ``s, t' = net(v1)``, ``t = (sqrt(|t'|^2 + R^2), t')``,
    ``w2 = log_o(exp_t(PT_{o->t}((0, v2 * exp(s)))))``; log-det
    ``sum s + (k - 1) [log(sinh r / r) - log(sinh r' / r')]``, ``r = |v2 e^s| / R``, ``r' = |w2| / R``
    (the transport is an isometry).
    """

    def _tangent_map(self, v, inverse):
        v1, v2 = split_channels(v)
        k = v2.shape[-1]
        raw_scale, shift = split_channels(MLPNet(self.hidden, 2 * k, name="net")(v1))
        log_scale = log_scale_of(raw_scale, "exp_tanh")
        t = lorentz.lift(shift, self.radius)
        if inverse:  # v2 -> scaled -> moved point of H^k -> its tangent coordinates w2
            scaled = v2 * jnp.exp(log_scale)
            u = lorentz.transport_from_origin(t, scaled, self.radius)
            w2 = lorentz.log_origin(lorentz.exp_map(t, u, self.radius, lorentz.euclidean_norm(scaled)),
                                    self.radius)
            on_h_k, sign = w2, 1.0
        else:  # the same steps backwards, from v2 = the moved point's tangent coordinates
            moved = lorentz.exp_origin(v2, self.radius)
            scaled = lorentz.transport_to_origin(t, lorentz.log_map(t, moved, self.radius), self.radius)
            w2 = scaled * jnp.exp(-log_scale)
            on_h_k, sign = v2, -1.0
        log_det = (jnp.sum(log_scale, -1) + volume_term(scaled, self.radius, k)
                   - volume_term(on_h_k, self.radius, k))
        return jnp.concatenate([v1, w2], -1), sign * log_det


class EuclideanCoupling(nn.Module, Bijector):
    """The Euclidean twin's layer: the same affine coupling on R^n, halves swapped by ``parity``."""

    hidden: int = 64
    parity: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, inverse: bool = False):
        y, log_det = FlatAffineCoupling(hidden=self.hidden, scale_fn="exp_tanh", name="coupling")(
            _oriented(x, self.parity), inverse)
        return _oriented(y, self.parity), log_det


LAYERS = {"tc": TangentCoupling, "whc": WrappedHyperboloidCoupling}
