"""Capping the spectral norm of a network's kernels: a bi-Lipschitz control for couplings.

The flow theory of Liao and He (arXiv 2102.06539) ties stable likelihood training to Lipschitz
bounds on the flow and its inverse. A coupling's Lipschitz constants grow with its network's, so
capping each kernel's largest singular value (of the kernel reshaped to ``(fan_in, out)``, as in
Miyato et al.'s spectral normalisation) bounds the network by the product of the caps.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def largest_singular_value(matrix: jax.Array, iterations: int = 10) -> jax.Array:
    """Power-iteration estimate from a fixed start (stateless, so nothing extra is stored).

    The singular vectors carry no gradient; the estimate ``u^T M v`` does, as in spectral
    normalisation.
    """
    v = jnp.ones((matrix.shape[1],), matrix.dtype) / jnp.sqrt(matrix.shape[1])
    m = jax.lax.stop_gradient(matrix)
    for _ in range(iterations):
        u = m @ v
        u = u / (jnp.linalg.norm(u) + 1e-12)
        v = m.T @ u
        v = v / (jnp.linalg.norm(v) + 1e-12)
    return u @ matrix @ v


def cap_kernel(kernel: jax.Array, cap: float) -> jax.Array:
    """``kernel * min(1, cap / sigma)``: unchanged below the cap (a zero kernel stays zero)."""
    sigma = largest_singular_value(kernel.reshape(-1, kernel.shape[-1]))
    return kernel * (cap / jnp.maximum(sigma, cap))


class CappedConv(nn.Module):
    """A 'SAME' convolution with ``nn.Conv``'s parameters, its spectral norm capped."""

    features: int
    kernel_size: tuple[int, int]
    cap: float
    zero_init: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = nn.initializers.zeros if self.zero_init else nn.initializers.lecun_normal()
        kernel = self.param("kernel", init, (*self.kernel_size, x.shape[-1], self.features), x.dtype)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), x.dtype)
        y = jax.lax.conv_general_dilated(x, cap_kernel(kernel, self.cap), (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias
