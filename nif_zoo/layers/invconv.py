"""Invertible 1x1 convolution (Glow), written as a matrix product over channels."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.diagnostics import record
from nif_zoo.layers.base import Bijector, check_rank


def _random_rotation(key: jax.Array, c: int, dtype) -> jax.Array:
    q, _ = jnp.linalg.qr(jax.random.normal(key, (c, c), dtype))
    return q


class InvConv1x1(nn.Module, Bijector):
    """``y_p = W x_p`` at every pixel p; ``log_det = h w log|det W|``.

    ``lu=True`` (default): ``W = L (U + diag(s))`` with unit lower-triangular ``L``, strictly
    upper ``U`` and ``log|det W| = sum log|s|``. It starts as a random rotation ``Q``: Glow's
    permutation ``P`` of ``Q = P L U`` is folded into the rotation (``P^T Q`` is one too), so
    every parameter is trained and nothing fixed needs storing. ``lu=False``: a full matrix and
    ``slogdet`` (the NIF authors' choice).
    """

    lu: bool = True

    def _weight(self, c: int, dtype) -> tuple[jax.Array, jax.Array]:
        if not self.lu:
            w = self.param("kernel", lambda k: _random_rotation(k, c, dtype))
            return w, jnp.linalg.slogdet(w)[1]

        def lu_init(key):
            perm, lower, upper = jax.scipy.linalg.lu(_random_rotation(key, c, dtype))
            del perm  # P^T Q = L U is itself a rotation
            return {"lower": jnp.tril(lower, -1), "upper": jnp.triu(upper, 1), "s": jnp.diag(upper)}

        f = self.param("lu", lu_init)
        lower = jnp.tril(f["lower"], -1) + jnp.eye(c, dtype=dtype)
        upper = jnp.triu(f["upper"], 1) + jnp.diag(f["s"])
        return lower @ upper, jnp.sum(jnp.log(jnp.abs(f["s"])))

    @nn.compact
    def __call__(self, x: jax.Array, inverse: bool = False):
        check_rank(x, 4, "InvConv1x1")
        w, log_det_w = self._weight(x.shape[-1], x.dtype)
        record(self, "singular_values", lambda: jnp.linalg.svd(w, compute_uv=False))
        log_det = jnp.broadcast_to(x.shape[1] * x.shape[2] * log_det_w, x.shape[:1])
        if inverse:
            return jnp.einsum("bhwc,dc->bhwd", x, jnp.linalg.inv(w)), -log_det
        return jnp.einsum("bhwc,dc->bhwd", x, w), log_det
