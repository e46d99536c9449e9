"""Stability controls: bounded coupling log-scales and spectrally capped coupling networks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nif_zoo.config import ModelConfig
from nif_zoo.layers.coupling import AffineCoupling, CouplingNet, MLPNet, log_scale_of
from nif_zoo.layers.lipschitz import cap_kernel, largest_singular_value


@pytest.mark.parametrize("scale_fn", ["sigmoid", "exp_tanh"])
def test_bounded_log_scale_stays_inside_the_bound(scale_fn):
    h = jnp.linspace(-1e4, 1e4, 2001)
    bounded = log_scale_of(h, scale_fn, max_log_scale=0.5)
    assert float(jnp.max(jnp.abs(bounded))) <= 0.5
    np.testing.assert_allclose(log_scale_of(h[:1] * 0, scale_fn, 0.5),
                               0.5 * jnp.tanh(log_scale_of(h[:1] * 0, scale_fn) / 0.5))


def test_unbounded_sigmoid_log_scale_is_unbounded_below():
    assert float(log_scale_of(jnp.array(-1e4), "sigmoid")) < -1e3


def test_power_iteration_matches_the_svd():
    m = jax.random.normal(jax.random.key(0), (40, 12), jnp.float64)
    np.testing.assert_allclose(largest_singular_value(m, iterations=200), jnp.linalg.norm(m, 2),
                               rtol=1e-6)


def test_cap_kernel_leaves_small_and_zero_kernels_alone():
    small = 0.01 * jax.random.normal(jax.random.key(1), (3, 3, 4, 8), jnp.float64)
    np.testing.assert_array_equal(cap_kernel(small, 1.0), small)
    np.testing.assert_array_equal(cap_kernel(jnp.zeros((3, 8)), 1.0), jnp.zeros((3, 8)))


def perturbed(params, scale, key=jax.random.key(2)):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return tree.unflatten([leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
                           for leaf, k in zip(leaves, keys, strict=True)])


def test_capped_mlp_is_lipschitz_bounded_and_uncapped_is_not():
    x = jax.random.normal(jax.random.key(3), (1, 6), jnp.float64)
    for cap, bounded in ((0.0, False), (1.0, True)):
        net = MLPNet(hidden=32, out_features=6, spectral_cap=cap)
        params = perturbed(net.init(jax.random.key(4), x), 3.0)
        jacobian = jax.jacfwd(lambda v, n=net, p=params: n.apply(p, v[None])[0])(x[0])
        norm = float(jnp.linalg.norm(jacobian, 2))
        assert (norm <= 1.0 + 1e-3) == bounded, (cap, norm)


def test_capped_conv_net_keeps_the_parameter_tree_of_the_plain_one():
    x = jnp.zeros((1, 4, 4, 2))
    plain = CouplingNet(hidden=8, out_channels=4).init(jax.random.key(0), x)
    capped = CouplingNet(hidden=8, out_channels=4, spectral_cap=1.0).init(jax.random.key(0), x)
    assert jax.tree.structure(plain) == jax.tree.structure(capped)


def test_capped_coupling_still_inverts():
    x = jax.random.normal(jax.random.key(5), (2, 4, 4, 4), jnp.float64)
    layer = AffineCoupling(hidden=8, max_log_scale=0.3, spectral_cap=0.5)
    params = perturbed(layer.init(jax.random.key(6), x), 1.0)
    y, log_det = layer.apply(params, x)
    back, inverse_log_det = layer.apply(params, y, inverse=True)
    np.testing.assert_allclose(back, x, atol=1e-10)
    np.testing.assert_allclose(log_det, -inverse_log_det, atol=1e-10)
    assert float(jnp.max(jnp.abs(log_det))) <= 0.3 * 4 * 4 * 2


@pytest.mark.parametrize("field", ["max_log_scale", "spectral_cap"])
def test_negative_controls_are_rejected(field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**{field: -1.0})


def test_old_configs_without_controls_load_with_controls_off():
    old = ModelConfig().to_dict()
    del old["max_log_scale"], old["spectral_cap"]
    config = ModelConfig.from_dict(old)
    assert config.max_log_scale == 0.0 and config.spectral_cap == 0.0
