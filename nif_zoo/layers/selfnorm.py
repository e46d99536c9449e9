"""Self-normalizing linear layers (Keller et al., ICML 2021): ``z = W x + b`` trained without ``W^-1``.

A layer holds ``W`` (``kernel``), ``b`` (``bias``) and a learned approximate inverse ``R``
(``inverse_kernel``, same shape). The *value* of every log-det is exact (``slogdet``; for a
k x k convolution, of its dense Toeplitz matrix) unless ``exact_log_det=False``; only the
*gradient* is substituted, so bits/dim stay honest while no ``W^-1`` is ever formed.

Derivation (descent form, per example; ``g_z`` is the loss gradient at ``z``). Training
maximises ``1/2 log p_f(x) + 1/2 log p_g(x)``, where ``p_f`` uses ``z = W x + b`` and ``p_g`` the
inverse model ``x = R (z - b)``, i.e. ``z = R^-1 x + b``:

- ``p_f``: ``d/dW [-log p_Z(W x + b)] = g_z x^T`` and ``d/dW [-log|det W|] = -W^-T ~ -R^T``.
- ``p_g``: ``d(R^-1) = -R^-1 dR R^-1`` gives ``d/dR [-log p_Z(R^-1 x + b)] = -R^-T g_z (R^-1 x)^T
  ~ -W^T g_z (W x)^T = -g_x (W x)^T`` with ``g_x = W^T g_z``, and ``d/dR [log|det R|] = R^-T ~ W^T``.

Halved: ``dW = 1/2 (g_z x^T - R^T)``, ``dR = 1/2 (-g_x (W x)^T + W^T)``; ``b`` and ``x`` appear
in both terms with equal weight, so ``db = g_z`` and ``dx = W^T g_z`` in full. At ``R = W^-1``
these are exactly the gradients of that objective. For a convolution ``R^T`` becomes
``flip(R)`` (mirrored taps, in/out channels swapped) times ``m``, the number of output positions
each tap touches (``h w`` for 1x1): the Toeplitz entries that share a tap are summed.

Mechanics: the log-det, a function of the parameters only, is a ``jax.custom_vjp`` whose
backward pass returns ``(1/2 m flip(R), -1/2 m flip(W))`` times its cotangent. The map ``z`` is a
``jax.custom_jvp`` (not ``custom_vjp``, which would forbid forward-mode Jacobians in ``x``):
its tangent ``W dx + 1/2 dW x + db - 1/2 W dR (W x)`` is exact in ``x`` and transposes to the
gradients above. Forward-mode derivatives with respect to ``W`` or ``R`` are therefore the
substituted ones, not the true ones.

The reconstruction loss ``||x - R W x||^2`` (``x`` detached, no bias; summed over an example,
averaged over the batch) is sown as ``("losses", "reconstruction")`` when that collection is
mutable, for the trainer to add with weight lambda. ``gradient="exact"`` gives the plain layer
(no ``R``, log-det gradient by autodiff of ``slogdet``) with the same parameter names and
initialisation. The inverse is ``x = R (z - b)`` (log-det ``log|det R|``, the map applied)
unless ``exact_inverse=True`` (a solve with ``W``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nif_zoo.layers.base import Bijector, batch_sum, check_rank

MAX_TOEPLITZ_DIM = 4096  # a float32 4096 x 4096 matrix is 64 MB and its LU a few seconds on a core
NOISE_GAIN = 0.01  # the authors' Xavier-normal gain for the noise added to identity kernels


def flip(kernel: jax.Array) -> jax.Array:
    """The kernel of the transposed map: spatial taps mirrored, in/out channels swapped."""
    return jnp.flip(kernel, tuple(range(kernel.ndim - 2))).swapaxes(-1, -2)


def dense_map(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return x @ kernel


def conv_map(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """'SAME' cross-correlation with an HWIO kernel (a per-pixel matrix product when 1x1)."""
    if kernel.shape[:2] == (1, 1):
        return jnp.einsum("bhwc,cd->bhwd", x, kernel[0, 0])
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _selfnorm_map(linear, x, kernel, bias, inverse_kernel):
    return linear(x, kernel) + bias


@_selfnorm_map.defjvp
def _selfnorm_map_jvp(linear, primals, tangents):
    x, kernel, bias, inverse_kernel = primals
    dx, dkernel, dbias, dinverse = tangents
    u = linear(x, kernel)
    dz = linear(dx, kernel) + 0.5 * linear(x, dkernel) + dbias - 0.5 * linear(linear(u, dinverse), kernel)
    return u + bias, dz


@jax.custom_vjp
def _substituted_log_det(value, kernel, inverse_kernel, multiplicity):
    return value


def _substituted_log_det_fwd(value, kernel, inverse_kernel, multiplicity):
    return value, (value, kernel, inverse_kernel, multiplicity)


def _substituted_log_det_bwd(residuals, g):
    value, kernel, inverse_kernel, m = residuals
    half = 0.5 * g * m
    return jnp.zeros_like(value), half * flip(inverse_kernel), -half * flip(kernel), jnp.zeros_like(m)


_substituted_log_det.defvjp(_substituted_log_det_fwd, _substituted_log_det_bwd)


def _shifts(n: int, k: int) -> np.ndarray:
    """``S[t, i, j] = 1`` where output row ``i`` reads input ``j = i + t - k // 2`` inside the image."""
    return np.stack([np.eye(n, k=t - k // 2) for t in range(k)])


def toeplitz(kernel: jax.Array, height: int, width: int) -> jax.Array:
    """The dense ``D x D`` matrix of :func:`conv_map` on flattened ``(height, width, c)`` images."""
    k, c = kernel.shape[0], kernel.shape[-1]
    dim = height * width * c
    if dim > MAX_TOEPLITZ_DIM:
        raise ValueError(
            f"SelfNormConv: an exact log-det or inverse of a {k}x{k} convolution builds its dense "
            f"D x D matrix, and D = {height}*{width}*{c} = {dim} exceeds {MAX_TOEPLITZ_DIM}; use "
            "smaller images, kernel_size=1, or exact_log_det=False (log-det values become 0)")
    sy = jnp.asarray(_shifts(height, k), kernel.dtype)
    sx = jnp.asarray(_shifts(width, k), kernel.dtype)
    return jnp.einsum("yab,xcd,yxno->acobdn", sy, sx, kernel).reshape(dim, dim)


def conv_multiplicity(height: int, width: int, k: int) -> np.ndarray:
    """How many output positions each tap of a 'SAME' k x k kernel touches, shape ``(k, k, 1, 1)``."""
    return np.outer(_shifts(height, k).sum((1, 2)), _shifts(width, k).sum((1, 2)))[..., None, None]


class _Ops(NamedTuple):
    """What differs between the dense and the convolutional layer, for one event shape."""

    linear: Callable  # (x, kernel) -> the map without bias
    log_abs_det: Callable  # kernel -> log|det| of that map on one example
    solve: Callable  # (kernel, y) -> x with linear(x, kernel) = y
    multiplicity: np.ndarray


def _dense_ops() -> _Ops:
    def solve(kernel, y):
        return jnp.linalg.solve(kernel.T, y.T).T

    return _Ops(dense_map, lambda kernel: jnp.linalg.slogdet(kernel)[1], solve, np.ones(()))


def _conv_ops(height: int, width: int, k: int) -> _Ops:
    if k == 1:
        def log_abs_det(kernel):
            return height * width * jnp.linalg.slogdet(kernel[0, 0])[1]

        def solve(kernel, y):
            flat = y.reshape(-1, y.shape[-1])
            return jnp.linalg.solve(kernel[0, 0].T, flat.T).T.reshape(y.shape)
    else:
        def log_abs_det(kernel):
            return jnp.linalg.slogdet(toeplitz(kernel, height, width))[1]

        def solve(kernel, y):
            flat = y.reshape(y.shape[0], -1)
            return jnp.linalg.solve(toeplitz(kernel, height, width), flat.T).T.reshape(y.shape)

    return _Ops(conv_map, log_abs_det, solve, conv_multiplicity(height, width, k))


def _orthogonal(key: jax.Array, c: int, dtype) -> jax.Array:
    """A random rotation as an IO kernel; the same matrix as ``InvConv1x1(lu=False)`` draws."""
    q, _ = jnp.linalg.qr(jax.random.normal(key, (c, c), dtype))
    return q.T


class _SelfNormLinear(nn.Module, Bijector):
    """Shared machinery; subclasses check the rank and say which :class:`_Ops` apply."""

    gradient: Literal["selfnorm", "exact"] = "selfnorm"
    exact_log_det: bool = True
    exact_inverse: bool = False
    use_bias: bool = True

    def _parameters(self, kernel_init: Callable, bias_shape: tuple[int, ...], noise_std: float, dtype):
        kernel = self.param("kernel", kernel_init)
        bias = (self.param("bias", lambda key: noise_std * jax.random.normal(key, bias_shape, dtype))
                if self.use_bias else jnp.zeros(bias_shape, dtype))
        if self.gradient == "exact":
            return kernel, bias, None
        if self.gradient != "selfnorm":
            raise ValueError(f"unknown gradient {self.gradient!r}; use 'selfnorm' or 'exact'")
        return kernel, bias, self.param("inverse_kernel", lambda _: flip(kernel))

    def _apply(self, x: jax.Array, inverse: bool, ops: _Ops, params):
        kernel, bias, inverse_kernel = params

        def per_example(log_det):
            return jnp.broadcast_to(log_det, x.shape[:1]).astype(x.dtype)

        if inverse:
            y = x - bias
            if inverse_kernel is None or self.exact_inverse:
                log_det = -ops.log_abs_det(kernel) if self._exact_values else 0.0
                return ops.solve(kernel, y), per_example(log_det)
            log_det = ops.log_abs_det(inverse_kernel) if self._exact_values else 0.0
            return ops.linear(y, inverse_kernel), per_example(log_det)
        if inverse_kernel is None:
            return ops.linear(x, kernel) + bias, per_example(ops.log_abs_det(kernel))
        if self.is_mutable_collection("losses"):
            self.sow("losses", "reconstruction", reconstruction_error(ops.linear, x, kernel, inverse_kernel))
        z = _selfnorm_map(ops.linear, x, kernel, bias, inverse_kernel)
        value = (jax.lax.stop_gradient(ops.log_abs_det(kernel)) if self.exact_log_det
                 else jnp.zeros((), x.dtype))
        m = jnp.asarray(ops.multiplicity, x.dtype)
        return z, per_example(_substituted_log_det(value, kernel, inverse_kernel, m))

    @property
    def _exact_values(self) -> bool:
        return self.exact_log_det or self.gradient == "exact"


def reconstruction_error(linear: Callable, x: jax.Array, kernel: jax.Array,
                         inverse_kernel: jax.Array) -> jax.Array:
    """``mean over the batch of ||x - R W x||^2`` with ``x`` detached and no bias."""
    x = jax.lax.stop_gradient(x)
    error = x - linear(linear(x, kernel), inverse_kernel)
    return jnp.mean(batch_sum(error * error))


class SelfNormDense(_SelfNormLinear):
    """``z = x W + b`` on vectors ``(batch, D)``; ``W`` starts as the identity plus small noise."""

    @nn.compact
    def __call__(self, x: jax.Array, inverse: bool = False):
        check_rank(x, 2, "SelfNormDense")
        d, dtype = x.shape[-1], x.dtype
        noise_std = NOISE_GAIN / math.sqrt(d)  # Xavier normal: sqrt(2 / (fan_in + fan_out))

        def kernel_init(key):
            return jnp.eye(d, dtype=dtype) + noise_std * jax.random.normal(key, (d, d), dtype)

        params = self._parameters(kernel_init, (d,), noise_std, dtype)
        return self._apply(x, inverse, _dense_ops(), params)


class SelfNormConv(_SelfNormLinear):
    """A ``kernel_size`` x ``kernel_size`` 'SAME' convolution on images ``(batch, h, w, c)``.

    ``kernel_size=1`` starts as a random rotation and replaces Glow's ``InvConv1x1``; larger
    (odd) kernels start as the identity plus small noise. Exact log-dets and inverses of k x k
    kernels build the dense Toeplitz matrix: images up to ``h w c = 4096`` numbers.
    """

    kernel_size: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, inverse: bool = False):
        check_rank(x, 4, "SelfNormConv")
        k, (_, h, w, c), dtype = self.kernel_size, x.shape, x.dtype
        if k < 1 or k % 2 == 0:
            raise ValueError(f"SelfNormConv needs an odd kernel_size for 'SAME' padding, got {k}")
        noise_std = NOISE_GAIN / math.sqrt(c * k * k)

        def kernel_init(key):
            if k == 1:
                return _orthogonal(key, c, dtype)[None, None]
            identity = jnp.zeros((k, k, c, c), dtype).at[k // 2, k // 2].set(jnp.eye(c, dtype=dtype))
            return identity + noise_std * jax.random.normal(key, (k, k, c, c), dtype)

        params = self._parameters(kernel_init, (c,), noise_std, dtype)
        return self._apply(x, inverse, _conv_ops(h, w, k), params)
