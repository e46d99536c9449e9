"""Self-normalizing layers: substituted gradients, exact values, inverses, twins, training.

The contract tests (round trips, log-det against ``jax.jacfwd``) run from ``LAYERS`` in
test_layers.py; these check what is particular to the self-normalizing layers.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from nif_zoo import train
from nif_zoo.config import ModelConfig
from nif_zoo.glow import FlowStep, Glow
from nif_zoo.layers.invconv import InvConv1x1
from nif_zoo.layers.selfnorm import SelfNormConv, SelfNormDense, conv_map, conv_multiplicity, toeplitz
from nif_zoo.models import FlowModel
from nif_zoo.snf_flows import ConvFlow, DenseFlow

# tiny programs run once: compile them without LLVM's optimisations (as test_layers.py does)
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _key(seed):
    return jax.random.key(seed, impl="rbg")  # threefry compiles slowly on CPU


def _normal_log_prob(z):
    return -0.5 * jnp.sum((z * z).reshape(z.shape[0], -1), axis=1)


def _draw(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def _perturbed(module, x, seed=1, scale=0.2):
    params = fast_jit(module.init)(_key(seed), x)["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: p + scale * rng.standard_normal(p.shape), params)


def _with_exact_inverse(params, inverse):
    return {**params, "inverse_kernel": inverse(params["kernel"])}


def _dense_inverse(kernel):
    return jnp.linalg.inv(kernel)


def _conv1x1_inverse(kernel):
    return jnp.linalg.inv(kernel[0, 0])[None, None]


# Gradients: at R = W^-1 the substitution is exact ----------------------------------------------

def _snf_objective(module):
    def objective(params, x):
        z, log_det = module.apply({"params": params}, x)
        return jnp.mean(_normal_log_prob(z) + log_det)
    return objective


def _exact_objective(linear, log_abs_det, matrix_inverse):
    """``1/2 log p_f + 1/2 log p_g`` with every inverse and determinant computed exactly."""
    def objective(params, x):
        w, b, r = params["kernel"], params["bias"], params["inverse_kernel"]
        log_f = _normal_log_prob(linear(x, w) + b) + log_abs_det(w)
        log_g = _normal_log_prob(linear(x, matrix_inverse(r)) + b) - log_abs_det(r)
        return jnp.mean(0.5 * log_f + 0.5 * log_g)
    return objective


CASES = {
    "dense": (SelfNormDense(), (4, 6), lambda x, w: x @ w, lambda w: jnp.linalg.slogdet(w)[1],
              _dense_inverse),
    "conv1x1": (SelfNormConv(kernel_size=1), (3, 4, 5, 3), conv_map,
                lambda w: 20 * jnp.linalg.slogdet(w[0, 0])[1], _conv1x1_inverse),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_substituted_gradients_equal_exact_objective_at_exact_inverse(name):
    module, shape, linear, log_abs_det, inverse = CASES[name]
    x = _draw(shape)
    params = _with_exact_inverse(_perturbed(module, x), inverse)
    snf = fast_jit(jax.value_and_grad(_snf_objective(module), argnums=(0, 1)))(params, x)
    exact = fast_jit(jax.value_and_grad(_exact_objective(linear, log_abs_det, inverse), argnums=(0, 1)))(
        params, x)
    np.testing.assert_allclose(snf[0], exact[0], rtol=1e-10)
    for got, want in zip(jax.tree.leaves(snf[1]), jax.tree.leaves(exact[1]), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
    # and it is a substitution: away from W^-1 the gradient of W differs from the exact one
    params["inverse_kernel"] = params["inverse_kernel"] + 0.05
    snf_w = fast_jit(jax.grad(_snf_objective(module)))(params, x)["kernel"]
    exact_w = fast_jit(jax.grad(_exact_objective(linear, log_abs_det, inverse)))(params, x)["kernel"]
    assert not np.allclose(snf_w, exact_w, atol=1e-6)


def test_multiplicity_is_kernel_gradient_of_conv_of_ones():
    h, w, k = 5, 6, 3
    kernel = _draw((k, k, 2, 2))
    grad = jax.grad(lambda kern: jnp.sum(conv_map(jnp.ones((1, h, w, 2)), kern)))(kernel)
    np.testing.assert_array_equal(grad, np.broadcast_to(conv_multiplicity(h, w, k), grad.shape))
    assert conv_multiplicity(h, w, k)[1, 1, 0, 0] == h * w  # the centre tap touches every pixel
    assert conv_multiplicity(h, w, k)[0, 0, 0, 0] == (h - 1) * (w - 1)


def test_conv_log_det_gradient_is_half_m_flipped_inverse_kernel():
    module = SelfNormConv(kernel_size=3)
    x = _draw((2, 4, 5, 2))
    params = _perturbed(module, x)
    grads = fast_jit(jax.grad(lambda p: jnp.sum(module.apply({"params": p}, x)[1])))(params)
    m = conv_multiplicity(4, 5, 3)
    flipped = lambda k: jnp.flip(k, (0, 1)).swapaxes(-1, -2)  # noqa: E731
    np.testing.assert_allclose(grads["kernel"], 2 * 0.5 * m * flipped(params["inverse_kernel"]), rtol=1e-12)
    np.testing.assert_allclose(grads["inverse_kernel"], -2 * 0.5 * m * flipped(params["kernel"]), rtol=1e-12)


# Values: exact log-dets, inverses, reconstruction -------------------------------------------

@pytest.mark.parametrize("kernel_size", [1, 3])
@pytest.mark.parametrize("gradient", ["selfnorm", "exact"])
def test_conv_log_det_is_slogdet_of_jacobian(kernel_size, gradient):
    module = SelfNormConv(gradient=gradient, kernel_size=kernel_size)
    x = _draw((1, 3, 4, 2))
    variables = {"params": _perturbed(module, x)}
    jac = fast_jit(jax.jacfwd(lambda v: module.apply(variables, v.reshape(x.shape))[0].reshape(-1)))(
        x.reshape(-1))
    _, log_det = fast_jit(module.apply)(variables, x)
    np.testing.assert_allclose(log_det, np.linalg.slogdet(np.asarray(jac))[1], rtol=1e-10)
    np.testing.assert_allclose(toeplitz(variables["params"]["kernel"], 3, 4), jac, atol=1e-13)


@functools.partial(fast_jit, static_argnums=0)
def _round_trip(module, variables, x):
    z, log_det = module.apply(variables, x)
    return z, log_det, *module.apply(variables, z, inverse=True)


@pytest.mark.parametrize("module,shape", [(SelfNormDense(exact_inverse=True), (3, 6)),
                                          (SelfNormConv(kernel_size=1, exact_inverse=True), (3, 4, 4, 3)),
                                          (SelfNormConv(kernel_size=3, exact_inverse=True), (3, 4, 4, 2))])
def test_exact_inverse_round_trips_with_any_inverse_kernel(module, shape):
    x = _draw(shape)
    variables = {"params": _perturbed(module, x)}
    z, log_det, back, log_det_back = _round_trip(module, variables, x)
    np.testing.assert_allclose(back, x, atol=1e-10)
    np.testing.assert_allclose(log_det_back, -log_det, rtol=1e-10)


@pytest.mark.parametrize("name", sorted(CASES))
def test_inverse_through_r_round_trips_when_r_is_exact(name):
    module, shape, *_, inverse = CASES[name]
    x = _draw(shape)
    params = _perturbed(module, x)
    variables = {"params": _with_exact_inverse(params, inverse)}
    z, log_det, back, log_det_back = _round_trip(module, variables, x)
    np.testing.assert_allclose(back, x, atol=1e-10)
    np.testing.assert_allclose(log_det_back, -log_det, rtol=1e-10)
    # an inexact R gives an inexact inverse, and the log-det of the map it applies
    _, _, back, log_det_back = _round_trip(module, {"params": params}, x)
    assert not np.allclose(back, x, atol=1e-3)
    np.testing.assert_allclose(log_det_back, CASES[name][3](params["inverse_kernel"]), rtol=1e-10)


def _reconstruction(module, params, x):
    _, sown = fast_jit(functools.partial(module.apply, mutable=["losses"]))({"params": params}, x)
    (value,) = sown["losses"]["reconstruction"]
    return value


@pytest.mark.parametrize("name", sorted(CASES))
def test_reconstruction_is_zero_at_exact_inverse_and_positive_otherwise(name):
    module, shape, linear, *_, inverse = CASES[name]
    x = _draw(shape)
    params = _perturbed(module, x)
    assert _reconstruction(module, _with_exact_inverse(params, inverse), x) < 1e-20
    error = x - linear(linear(x, params["kernel"]), params["inverse_kernel"])
    expected = np.mean(np.sum(np.asarray(error).reshape(len(x), -1) ** 2, axis=1))
    np.testing.assert_allclose(_reconstruction(module, params, x), expected, rtol=1e-12)
    assert expected > 1e-3


def test_reconstruction_is_sown_only_when_collected():
    module = SelfNormDense()
    x = _draw((2, 3))
    variables = {"params": _perturbed(module, x)}
    _, sown = module.apply(variables, x, mutable=["losses"])
    assert set(sown) == {"losses"}
    z, _ = module.apply(variables, x)  # immutable: no error, nothing sown
    assert z.shape == x.shape


def test_exact_log_det_false_skips_the_value_but_keeps_the_gradient():
    x = _draw((2, 4))
    params = _perturbed(SelfNormDense(), x)

    def total_log_det(module):
        return fast_jit(jax.value_and_grad(lambda p: jnp.sum(module.apply({"params": p}, x)[1])))(params)

    value, grads = total_log_det(SelfNormDense())
    skipped_value, skipped_grads = total_log_det(SelfNormDense(exact_log_det=False))
    assert skipped_value == 0.0 and value != 0.0
    jax.tree.map(np.testing.assert_array_equal, grads, skipped_grads)


# Initialisation and twins ------------------------------------------------------------------

@pytest.mark.parametrize("make", [SelfNormDense, lambda **kw: SelfNormConv(kernel_size=3, **kw)])
def test_exact_twin_has_same_parameters_and_initialisation(make):
    x = _draw((2, 4, 4, 2)) if make is not SelfNormDense else _draw((2, 5))
    snf = fast_jit(make().init)(_key(3), x)["params"]
    exact = fast_jit(make(gradient="exact").init)(_key(3), x)["params"]
    assert set(snf) == {"kernel", "bias", "inverse_kernel"} and set(exact) == {"kernel", "bias"}
    np.testing.assert_array_equal(snf["kernel"], exact["kernel"])
    np.testing.assert_array_equal(snf["bias"], exact["bias"])
    np.testing.assert_allclose(snf["inverse_kernel"], jnp.flip(snf["kernel"], tuple(range(x.ndim - 2))
                                                               ).swapaxes(-1, -2))


def test_dense_and_kxk_init_near_identity_and_1x1_init_orthogonal_with_exact_inverse():
    dense = fast_jit(SelfNormDense().init)(_key(0), _draw((2, 50)))["params"]
    assert 0 < np.max(np.abs(dense["kernel"] - np.eye(50))) < 0.01
    x = _draw((2, 3, 3, 4))
    conv = fast_jit(SelfNormConv(kernel_size=1).init)(_key(0), x)["params"]
    w, r = conv["kernel"][0, 0], conv["inverse_kernel"][0, 0]
    np.testing.assert_allclose(w @ r, np.eye(4), atol=1e-12)


def test_selfnorm_glow_step_starts_like_full_invconv():
    """The SNF Glow's 1x1 kernel is drawn as InvConv1x1(lu=False) draws its matrix."""
    x = _draw((2, 4, 4, 4))
    snf = fast_jit(FlowStep(hidden=8, lu=False, selfnorm=True).init)(_key(5), x)["params"]
    exact = fast_jit(FlowStep(hidden=8, lu=False).init)(_key(5), x)["params"]
    np.testing.assert_array_equal(snf["invconv"]["kernel"][0, 0], exact["invconv"]["kernel"].T)
    jax.tree.map(np.testing.assert_array_equal, snf["coupling"], exact["coupling"])
    direct = fast_jit(InvConv1x1(lu=False).init)(_key(0), x)["params"]["kernel"]
    via_snf = fast_jit(SelfNormConv(kernel_size=1).init)(_key(0), x)["params"]["kernel"][0, 0]
    np.testing.assert_array_equal(via_snf, direct.T)


@pytest.mark.parametrize("backbone", ["dense", "cnn"])
def test_backbone_twins_start_from_the_same_point(backbone):
    x = _draw((2, 4, 4, 1))
    make = {"dense": lambda g: DenseFlow((4, 4, 1), gradient=g),
            "cnn": lambda g: ConvFlow((4, 4, 1), blocks=2, layers_per_block=2, gradient=g)}[backbone]
    snf = fast_jit(make("selfnorm").init)(_key(0), x)["params"]
    exact = fast_jit(make("exact").init)(_key(0), x)["params"]
    for name, layer in exact.items():
        jax.tree.map(np.testing.assert_array_equal, layer, {k: snf[name][k] for k in layer})


def test_selfnorm_glow_is_a_flow_and_sows_one_reconstruction_per_step():
    glow = Glow(image_shape=(4, 4, 1), levels=1, steps=2, hidden=4, lu=False, selfnorm=True)
    x = _draw((2, 4, 4, 1))
    params = _perturbed(glow, x, scale=0.05)
    invconv = params["level0"]["step"]["invconv"]
    invconv["inverse_kernel"] = jnp.linalg.inv(invconv["kernel"][:, 0, 0])[:, None, None]

    @fast_jit
    def evaluate(params, x):
        variables = {"params": params}
        (z, log_det), sown = glow.apply(variables, x, mutable=["losses"])
        back, _ = glow.apply(variables, z, inverse=True)
        jac = jax.jacfwd(lambda v: glow.apply(variables, v.reshape(x[:1].shape))[0].reshape(-1))(
            x[:1].reshape(-1))
        return log_det, back, jac, sown["losses"]

    log_det, back, jac, losses = evaluate(params, x)
    np.testing.assert_allclose(back, x, atol=1e-10)
    np.testing.assert_allclose(log_det[0], np.linalg.slogdet(np.asarray(jac))[1], rtol=1e-10)
    (reconstruction,) = losses["level0"]["step"]["invconv"]["reconstruction"]
    assert reconstruction.shape == (2,)  # one per scanned step
    np.testing.assert_allclose(reconstruction, 0.0, atol=1e-20)


# Errors ------------------------------------------------------------------------------------

def test_clear_errors():
    with pytest.raises(ValueError, match="SelfNormDense expects"):
        SelfNormDense().init(_key(0), jnp.zeros((2, 3, 3, 1)))
    with pytest.raises(ValueError, match="SelfNormConv expects"):
        SelfNormConv().init(_key(0), jnp.zeros((2, 9)))
    with pytest.raises(ValueError, match="odd kernel_size"):
        SelfNormConv(kernel_size=2).init(_key(0), jnp.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="unknown gradient"):
        SelfNormDense(gradient="approx").init(_key(0), jnp.zeros((1, 3)))
    big = jax.ShapeDtypeStruct((1, 32, 32, 8), jnp.float32)  # D = 8192 > 4096
    with pytest.raises(ValueError, match="8192 exceeds 4096"):
        jax.eval_shape(SelfNormConv(kernel_size=3).init, _key(0), big)
    # training without the value needs no Toeplitz matrix
    jax.eval_shape(SelfNormConv(kernel_size=3, exact_log_det=False).init, _key(0), big)
    with pytest.raises(ValueError, match="invconv='full'"):
        ModelConfig(linear="selfnorm")


def test_old_config_dicts_load_with_exact_glow_defaults():
    old = ModelConfig().to_dict()
    del old["backbone"], old["linear"]
    config = ModelConfig.from_dict(old)
    assert config == ModelConfig() and config.backbone == "glow" and config.linear == "exact"


# End to end ----------------------------------------------------------------------------------

def _inverse_error(params):
    errors = []
    for layer in params["backbone"].values():
        w, r = layer["kernel"], layer["inverse_kernel"]
        errors.append(float(jnp.sum((r @ w - jnp.eye(len(w))) ** 2)))
    return sum(errors)


def test_tiny_selfnorm_model_trains_and_reconstruction_loss_teaches_the_inverse():
    model = FlowModel(ModelConfig(image_shape=(4, 4, 1), n_bits=8, logit_lambda=1e-6, backbone="dense",
                                  steps=2, linear="selfnorm"))
    config = ml_collections.ConfigDict(dict(learning_rate=1e-2, warmup_steps=1, grad_clip=5.0))
    images = np.random.default_rng(0).integers(0, 256, (32, 4, 4, 1)).astype(np.uint8)
    state = train.create_train_state(config, model, images, _key(0))
    # start from an inaccurate inverse: R = 1.5 W^T
    params = jax.tree.map(lambda p: p, state.params)
    for layer in params["backbone"].values():
        layer["inverse_kernel"] = 1.5 * layer["kernel"].T
    state = state.replace(params=params)
    step = jax.jit(train.train_step, static_argnums=(3, 4, 5))
    start = _inverse_error(state.params)
    reconstructions = []
    for i in range(30):
        state, metrics = step(state, jnp.asarray(images[i % 2 * 16:][:16]), _key(i), 8, 16, 100.0)
        summary = metrics.compute()
        assert math.isfinite(summary["bits_per_dim"]) and summary["skipped"] == 0
        reconstructions.append(summary["reconstruction"])
    assert _inverse_error(state.params) < 0.1 * start
    assert 0 < reconstructions[-1] < 0.1 * reconstructions[0]
