"""Capping the spectral norm of a network's kernels: a bi-Lipschitz control for couplings.

The flow theory of Liao and He (arXiv 2102.06539) ties stable likelihood training to Lipschitz
bounds on the flow and its inverse. A coupling's Lipschitz constants grow with its network's, so
capping each kernel's largest singular value (of the kernel reshaped to ``(fan_in, out)``, as in
Miyato et al.'s spectral normalisation) bounds the network by the product of the caps.
"""

from __future__ import annotations

import functools

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


def _cap_params(variables: dict, cap: float) -> dict:
    params = variables.get("params", {})
    if "kernel" not in params:
        return variables
    return {**variables, "params": {**params, "kernel": cap_kernel(params["kernel"], cap)}}


def spectrally_capped(module_class: type[nn.Module], cap: float) -> type[nn.Module]:
    """``module_class`` whose ``kernel`` parameter is read through :func:`cap_kernel`.

    The parameter tree is unchanged (the stored kernel is the uncapped one); ``cap <= 0`` returns
    ``module_class`` itself.
    """
    if cap <= 0:
        return module_class
    return nn.map_variables(module_class, "params", trans_in_fn=functools.partial(_cap_params, cap=cap),
                            init=True)
