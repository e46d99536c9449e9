"""A per-pixel linear flow trained by gradient ascent reaches the closed-form optimum (float64)."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nif_zoo import data, linear_optimum
from nif_zoo.layers.actnorm import ActNorm
from nif_zoo.layers.invconv import InvConv1x1
from nif_zoo.layers.preprocess import dequantize, quantize_pixels


class PixelLinearFlow(nn.Module):
    """A 1x1 convolution, after ActNorm's per-channel shift and scale when ``actnorm``."""

    actnorm: bool

    @nn.compact
    def __call__(self, x):
        log_det = jnp.zeros(x.shape[:1], x.dtype)
        if self.actnorm:
            x, log_det = ActNorm(data_init=False)(x)
        z, ld = InvConv1x1(lu=False)(x)
        return z, log_det + ld


def fitted_log_likelihood(x: jax.Array, actnorm: bool) -> float:
    """Total log-likelihood after L-BFGS on the exact objective, from a random rotation."""
    module = PixelLinearFlow(actnorm)
    params = module.init(jax.random.key(0), x)["params"]

    def negative_log_likelihood(p):
        z, log_det = module.apply({"params": p}, x)
        normal = -0.5 * jnp.sum(z**2) - 0.5 * z.size * math.log(2 * math.pi)
        return -(normal + jnp.sum(log_det))

    solver = optax.lbfgs()
    state = solver.init(params)
    value_and_grad = optax.value_and_grad_from_state(negative_log_likelihood)

    @jax.jit
    def step(p, s):
        value, grad = value_and_grad(p, state=s)
        updates, s = solver.update(grad, s, p, value=value, grad=grad,
                                   value_fn=negative_log_likelihood)
        return optax.apply_updates(p, updates), s

    for _ in range(300):
        params, state = step(params, state)
    return -float(negative_log_likelihood(params))


def correlated_images(seed: int, shape=(64, 4, 4, 3)) -> jax.Array:
    """Non-Gaussian pixels with correlated channels and a non-zero mean."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    mix = jax.random.normal(k1, (shape[-1], shape[-1]), jnp.float64)
    return jax.random.uniform(k2, shape, jnp.float64) @ mix + 0.7


def fmnist_pixels(n: int = 256) -> jax.Array:
    """3-bit test images dequantised, squeezed so that each pixel has 4 correlated channels."""
    images, _ = data.load_dataset("fmnist", "test")
    x, _ = dequantize(jax.random.key(1), quantize_pixels(images[:n], 3), 3, jnp.float64)
    return jnp.asarray(linear_optimum.pixel_vectors(x, 2).reshape(n, 14, 14, 4))


@pytest.mark.parametrize("actnorm", [False, True], ids=["conv1x1", "actnorm+conv1x1"])
@pytest.mark.parametrize("source", ["random", "fmnist"])
def test_gradient_ascent_reaches_the_closed_form_optimum(source, actnorm):
    x = correlated_images(0) if source == "random" else fmnist_pixels()
    vectors = x.reshape(-1, x.shape[-1])
    optimum = float(linear_optimum.optimum_log_likelihood(vectors, centred=actnorm))
    fitted = fitted_log_likelihood(x, actnorm)
    assert fitted <= optimum + 1e-6 * abs(optimum)
    assert fitted == pytest.approx(optimum, rel=1e-7)


def test_the_shift_matters_on_data_with_a_mean():
    vectors = correlated_images(1).reshape(-1, 3)
    without = linear_optimum.optimum_log_likelihood(vectors, centred=False)
    with_shift = linear_optimum.optimum_log_likelihood(vectors, centred=True)
    assert with_shift > without + 1.0


def test_the_optimal_weight_attains_the_optimum():
    vectors = correlated_images(2).reshape(-1, 3)
    w = linear_optimum.optimal_weight(vectors)
    np.testing.assert_allclose(w.T @ w, jnp.linalg.inv(linear_optimum.second_moment(vectors, False)),
                               rtol=1e-9)
    z = vectors @ w.T
    n, c = vectors.shape
    value = (-0.5 * jnp.sum(z**2) - 0.5 * n * c * math.log(2 * math.pi)
             + n * jnp.linalg.slogdet(w)[1])
    np.testing.assert_allclose(value, linear_optimum.optimum_log_likelihood(vectors), rtol=1e-12)


def test_nested_larger_blocks_never_do_worse():
    images = np.asarray(data.load_dataset("fmnist", "test")[0][:500])
    bpd = linear_optimum.reference_bits_per_dim(images, 3, blocks=(1, 2, 4, 14))
    # Nested models (each block size a multiple of the last) can only gain.
    assert bpd[1] >= bpd[2] >= bpd[4]
    assert bpd[2] >= bpd[14]


def test_pixel_vectors_rejects_a_block_that_does_not_divide():
    with pytest.raises(ValueError, match="does not divide"):
        linear_optimum.pixel_vectors(jnp.zeros((1, 28, 28, 1)), 3)
