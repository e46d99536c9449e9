"""Stability controls: bounded coupling log-scales and spectrally capped coupling networks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nif_zoo import diagnostics
from nif_zoo.config import ModelConfig
from nif_zoo.layers.coupling import AffineCoupling, CouplingNet, MLPNet, log_scale_of
from nif_zoo.layers.lipschitz import cap_kernel, largest_singular_value
from nif_zoo.models import FlowModel


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


def perturbed(params, scale, seed=2):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
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


def small_model_and_input():
    config = ModelConfig(steps=2, hidden=8, split="learned", head="nif", latent_dim=8)
    model = FlowModel(config)
    x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1), jnp.float64) - 0.5
    params = perturbed(model.init(jax.random.key(1), x)["params"], 0.05)
    return model, params, x


def test_per_layer_log_dets_add_up_to_the_backbone_log_det():
    model, params, x = small_model_and_input()
    layers = diagnostics.per_layer(model, params, x)
    log_dets = [v for k, v in layers.items() if k.endswith("log_det")]
    assert len(log_dets) == 2 * 2 * 3 + 1  # levels x steps x (actnorm, invconv, coupling) + split
    y, _ = model.apply({"params": params}, x, method=lambda m, x: m.logit(x))
    _, backbone_log_det = model.apply({"params": params}, y, method=lambda m, y: m.backbone(y))
    np.testing.assert_allclose(sum(log_dets), backbone_log_det, rtol=1e-10)


def test_singular_values_are_those_of_each_1x1_weight():
    model, params, x = small_model_and_input()
    layers = diagnostics.per_layer(model, params, x)
    lu = params["backbone"]["level1"]["step"]["invconv"]["lu"]
    step = jax.tree.map(lambda a: a[1], lu)
    c = step["s"].shape[0]
    w = (jnp.tril(step["lower"], -1) + jnp.eye(c)) @ (jnp.triu(step["upper"], 1) + jnp.diag(step["s"]))
    np.testing.assert_allclose(layers["backbone/level1/step1/invconv/singular_values"],
                               jnp.linalg.svd(w, compute_uv=False), rtol=1e-10)
    summary = diagnostics.summary(model, params, x)
    assert summary["diagnostics/backbone/level1/step1/invconv/singular_value_max"] == pytest.approx(
        float(jnp.linalg.norm(w, 2)))


@pytest.mark.parametrize("net", ["conv", "mlp"])
def test_a_cap_above_every_kernel_norm_changes_nothing(net):
    if net == "conv":
        x = jax.random.normal(jax.random.key(7), (2, 4, 4, 2), jnp.float64)
        plain, capped = CouplingNet(8, 4), CouplingNet(8, 4, spectral_cap=1e6)
    else:
        x = jax.random.normal(jax.random.key(7), (2, 6), jnp.float64)
        plain, capped = MLPNet(8, 6), MLPNet(8, 6, spectral_cap=1e6)
    params = perturbed(plain.init(jax.random.key(8), x), 0.3)
    np.testing.assert_allclose(capped.apply(params, x), plain.apply(params, x), rtol=1e-12)


def test_diagnostics_run_on_a_model_with_the_controls_on():
    config = ModelConfig(steps=2, hidden=8, split="learned", spectral_cap=1.0, max_log_scale=0.5)
    model = FlowModel(config)
    x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1), jnp.float64) - 0.5
    params = model.init(jax.random.key(1), x)["params"]
    assert all(np.isfinite(v) for v in diagnostics.summary(model, params, x).values())
