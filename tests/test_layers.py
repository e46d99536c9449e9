"""One table of bijective layers drives every contract test (distrax / flowjax style).

A new layer joins with one line in ``LAYERS``. Every layer is initialised on a batch and its
parameters are then perturbed with small random noise: zero-initialised couplings and splits
are the identity otherwise, and the checks below would prove little.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from nif_zoo.flat_flow import FlatFlow
from nif_zoo.glow import FlowStep, Glow
from nif_zoo.layers.actnorm import ActNorm
from nif_zoo.layers.coupling import AffineCoupling, FlatAffineCoupling
from nif_zoo.layers.invconv import InvConv1x1
from nif_zoo.layers.preprocess import Logit
from nif_zoo.layers.reshape import Permute, Reverse, Squeeze
from nif_zoo.layers.selfnorm import SelfNormConv, SelfNormDense
from nif_zoo.layers.smooth_leaky_relu import SmoothLeakyReLU
from nif_zoo.layers.split import ConditionalSplit
from nif_zoo.snf_flows import ConvFlow, DenseFlow

BATCH = 3

# LLVM's optimisation passes are most of XLA:CPU's compile time, and these programs are tiny and
# run once: compile them without (same HLO, same arithmetic; about twice as fast to compile).
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def rng_key(seed: int) -> jax.Array:
    """A PRNG key whose sampling compiles fast on CPU (threefry takes seconds per shape)."""
    return jax.random.key(seed, impl="rbg")


@dataclasses.dataclass(frozen=True)
class Case:
    make: Callable[[], nn.Module]
    shape: tuple[int, ...]  # event shape of one input example
    out_shape: tuple[int, ...] | None = None  # event shape of the forward output (default: same)
    bad_input: tuple[int, ...] | None = None  # a whole wrong-rank input, if the layer checks rank
    unit_interval: bool = False  # inputs inside (-1/2, 1/2) (Logit)
    volume_preserving: bool = False  # log_det is exactly zero
    init: Callable | None = None  # (module, key, x) -> variables; default: module.init, jitted
    eager: str = "both"  # directions checked un-jitted ("forward", "none": eager Glow compiles)


LAYERS = {
    "actnorm_image": Case(ActNorm, (4, 4, 3), bad_input=(5,)),
    "actnorm_flat": Case(ActNorm, (5,), bad_input=(5,)),
    "invconv_lu": Case(lambda: InvConv1x1(lu=True), (4, 4, 3), bad_input=(4, 4, 3)),
    "invconv_full": Case(lambda: InvConv1x1(lu=False), (4, 4, 3), bad_input=(2, 16, 3)),
    "coupling_sigmoid": Case(lambda: AffineCoupling(hidden=8), (4, 4, 4), bad_input=(4, 4, 4)),
    "coupling_exp_tanh": Case(lambda: AffineCoupling(hidden=8, scale_fn="exp_tanh"), (4, 4, 4),
                              bad_input=(2, 16, 4)),
    "coupling_additive": Case(lambda: AffineCoupling(hidden=8, additive=True), (4, 4, 4),
                              bad_input=(4, 4, 4), volume_preserving=True),
    "coupling_odd_channels": Case(lambda: AffineCoupling(hidden=8), (4, 4, 3), bad_input=(4, 4, 3)),
    "flat_coupling": Case(lambda: FlatAffineCoupling(hidden=8), (5,), bad_input=(2, 5, 1)),
    "coupling_bounded_capped": Case(
        lambda: AffineCoupling(hidden=8, max_log_scale=0.5, spectral_cap=1.0), (4, 4, 4),
        bad_input=(4, 4, 4)),
    "flat_coupling_bounded_capped": Case(
        lambda: FlatAffineCoupling(hidden=8, max_log_scale=0.5, spectral_cap=1.0), (5,),
        bad_input=(2, 5, 1)),
    "squeeze": Case(Squeeze, (4, 4, 3), out_shape=(2, 2, 12), bad_input=(2, 16, 3),
                    volume_preserving=True),
    "reverse_image": Case(Reverse, (4, 4, 3), volume_preserving=True),
    "reverse_flat": Case(Reverse, (5,), volume_preserving=True),
    "permute": Case(lambda: Permute(seed=3), (7,), volume_preserving=True),
    "conditional_split": Case(ConditionalSplit, (4, 4, 4), bad_input=(4, 4, 4)),
    "logit": Case(Logit, (4, 4, 2), unit_interval=True),
    "flow_step": Case(lambda: FlowStep(hidden=8), (4, 4, 4)),
    "glow_passthrough": Case(lambda: Glow(image_shape=(8, 8, 1), levels=2, steps=2, hidden=8),
                             (8, 8, 1), out_shape=(64,), bad_input=(8, 8, 1), eager="forward"),
    # the learned split, exp(tanh) scales and the rolled (not unrolled) scan of the steps
    "glow_learned": Case(lambda: Glow(image_shape=(8, 8, 1), levels=2, steps=2, hidden=8,
                                      split="learned", scale_fn="exp_tanh", unroll=False),
                         (8, 8, 1), out_shape=(64,), bad_input=(2, 8, 8), eager="none",
                         init=lambda module, key, x: _init_learned_glow(module, key, x)),
    "flat_flow": Case(lambda: FlatFlow(num_layers=2, hidden=8), (6,), bad_input=(2, 3, 2)),
    # self-normalizing layers: the exact inverse, since perturbation makes R no inverse of W
    "selfnorm_dense": Case(lambda: SelfNormDense(exact_inverse=True), (5,), bad_input=(2, 5, 1)),
    "selfnorm_conv1x1": Case(lambda: SelfNormConv(exact_inverse=True), (4, 4, 3), bad_input=(4, 4, 3)),
    "selfnorm_conv3x3": Case(lambda: SelfNormConv(kernel_size=3, exact_inverse=True), (4, 3, 2),
                             bad_input=(12, 2)),
    "exact_conv3x3": Case(lambda: SelfNormConv(gradient="exact", kernel_size=3), (4, 3, 2),
                          bad_input=(12, 2)),
    "smooth_leaky_relu": Case(SmoothLeakyReLU, (5,)),
    "snf_dense_flow": Case(lambda: DenseFlow((2, 2, 2), exact_inverse=True), (2, 2, 2), out_shape=(8,),
                           bad_input=(2, 2, 2)),
    "snf_conv_flow": Case(lambda: ConvFlow((4, 4, 1), blocks=2, layers_per_block=2, exact_inverse=True),
                          (4, 4, 1), out_shape=(16,), bad_input=(4, 4, 1)),
}


def _init_learned_glow(module, key, x):
    """The passthrough Glow's initialisation plus the split's (zero-initialised) parameters.

    A Glow init compiles for seconds; the learned split only adds ``split0``. The structure is
    checked against ``jax.eval_shape(module.init)``, which traces the real init.
    """
    params = dict(built("glow_passthrough").initial["params"])
    params["split0"] = ConditionalSplit().init(key, jnp.zeros((1, 4, 4, 4), x.dtype))["params"]
    expected = jax.eval_shape(module.init, key, x)
    got = jax.tree_util.tree_map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
    assert got == expected["params"]
    return {"params": params}


def perturb(params, seed: int, scale: float = 0.1):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda p: p + scale * rng.standard_normal(p.shape), params)


def draw(case: Case, rng: np.random.Generator, batch: int = BATCH) -> jax.Array:
    shape = (batch,) + case.shape
    if case.unit_interval:
        return jnp.asarray(rng.uniform(-0.49, 0.49, shape))
    return jnp.asarray(rng.standard_normal(shape))


def _flat_jacobian(f, x):
    return jax.jacfwd(lambda v: f(v.reshape(x.shape))[0].reshape(-1))(x.reshape(-1))


class Built(NamedTuple):
    name: str
    case: Case
    module: nn.Module
    variables: dict  # perturbed
    initial: dict  # as initialised
    x: jax.Array
    z: jax.Array  # a latent point away from forward(x)
    out: dict  # every jitted quantity the tests check, computed in one compiled call


@functools.cache
def built(name: str) -> Built:
    """A table entry initialised once, with perturbed parameters, evaluated once under jit."""
    case = LAYERS[name]
    module = case.make()
    seed = zlib.crc32(name.encode())
    rng = np.random.default_rng(seed)
    x = draw(case, rng)
    initial = variables = (case.init or (lambda m, k, v: fast_jit(m.init)(k, v)))(
        module, rng_key(seed), x)
    if variables:
        variables = {"params": perturb(variables["params"], seed + 1)}
    z_noise = jnp.asarray(0.05 * rng.standard_normal((BATCH,) + (case.out_shape or case.shape)))

    def forward(v):
        return module.apply(variables, v)

    def inverse(v):
        return module.apply(variables, v, inverse=True)

    @fast_jit
    def evaluate(x, z_noise):
        y, ld_fwd = forward(x)
        z = y + z_noise
        # one inverse pass for the round trip and for the new latent points
        back, ld_back = inverse(jnp.concatenate([y, z]))
        x_z = back[BATCH:]
        z_back, ld_fwd_z = forward(x_z)
        return dict(y=y, ld_fwd=ld_fwd, x_back=back[:BATCH], ld_inv=ld_back[:BATCH], z=z, x_z=x_z,
                    ld_inv_z=ld_back[BATCH:], z_back=z_back, ld_fwd_z=ld_fwd_z,
                    jac_fwd=_flat_jacobian(forward, x))

    out = evaluate(x, z_noise)
    return Built(name, case, module, variables, initial, x, out["z"], out)


@pytest.fixture(params=sorted(LAYERS), scope="module")
def layer(request) -> Built:
    return built(request.param)


def test_shapes_and_round_trip(layer):
    out = layer.out
    assert out["y"].shape == (BATCH,) + (layer.case.out_shape or layer.case.shape)
    assert out["ld_fwd"].shape == out["ld_inv"].shape == (BATCH,)
    assert out["y"].dtype == layer.x.dtype == out["ld_fwd"].dtype
    assert out["x_back"].shape == layer.x.shape
    np.testing.assert_allclose(out["x_back"], layer.x, atol=1e-10, rtol=1e-10)
    # log|det d f/dx|(x) == -log|det d f^-1/dy|(f(x))
    np.testing.assert_allclose(out["ld_fwd"], -out["ld_inv"], atol=1e-10, rtol=1e-10)


def test_inverse_then_forward(layer):
    out = layer.out
    np.testing.assert_allclose(out["z_back"], out["z"], atol=1e-10, rtol=1e-10)
    np.testing.assert_allclose(out["ld_fwd_z"], -out["ld_inv_z"], atol=1e-10, rtol=1e-10)


def _block_log_dets(jac, b):
    """log|det| of each example's Jacobian block; asserts that examples do not interact."""
    d = jac.shape[0] // b
    assert jac.shape == (b * d, b * d), "a bijection keeps the dimension"
    jac = np.asarray(jac).reshape(b, d, b, d)
    log_dets = []
    for i in range(b):
        for j in range(b):
            if i != j:
                np.testing.assert_allclose(jac[i, :, j, :], 0.0, atol=1e-12)
        sign, logabs = np.linalg.slogdet(jac[i, :, i, :])
        assert sign != 0
        log_dets.append(logabs)
    return np.array(log_dets)


def test_log_det_matches_jacobian(layer):
    """The forward log-det is the Jacobian's; the inverse's follows from the round trip test.

    (If f^-1(f(x)) = x, then d f^-1 / dy at f(x) is the inverse matrix of d f / dx at x, so
    ``ld_inv(f(x)) == -ld_fwd(x)`` checks the inverse log-det against the same Jacobian.)
    """
    out = layer.out
    np.testing.assert_allclose(out["ld_fwd"], _block_log_dets(out["jac_fwd"], BATCH),
                               atol=1e-8, rtol=1e-8)


def test_jit_agrees(layer):
    """Eager (un-jitted) application matches the jitted evaluation."""
    if layer.case.eager == "none":
        pytest.skip(f"{layer.name}: an eager Glow recompiles its scans on every call")
    y, ld = layer.module.apply(layer.variables, layer.x)
    np.testing.assert_allclose(y, layer.out["y"], atol=1e-12, rtol=1e-12)
    np.testing.assert_allclose(ld, layer.out["ld_fwd"], atol=1e-12, rtol=1e-12)
    if layer.case.eager == "both":
        x_z, ld_inv = layer.module.apply(layer.variables, layer.z, inverse=True)
        np.testing.assert_allclose(x_z, layer.out["x_z"], atol=1e-12, rtol=1e-12)
        np.testing.assert_allclose(ld_inv, layer.out["ld_inv_z"], atol=1e-12, rtol=1e-12)


def test_perturbed_layer_is_not_trivial(layer):
    """Guards the other tests: perturbed layers move points, and volumes unless they cannot."""
    y, ld = layer.out["y"], layer.out["ld_fwd"]
    if y.shape == layer.x.shape:
        assert not np.allclose(y, layer.x)
    if layer.case.volume_preserving:
        np.testing.assert_array_equal(ld, 0.0)
    else:
        assert np.all(np.abs(ld) > 1e-3)


def test_wrong_rank_raises(layer):
    if layer.case.bad_input is None:
        pytest.skip(f"{layer.name} does not check the rank of its input")
    bad = jnp.zeros(layer.case.bad_input, jnp.float64)
    with pytest.raises(ValueError, match=rf"{type(layer.module).__name__}.*expects"):
        layer.module.apply(layer.variables, bad)


def test_glow_rejects_wrong_image_and_latent_shapes():
    module, variables = built("glow_passthrough").module, built("glow_passthrough").variables
    with pytest.raises(ValueError, match=r"\(8, 8, 1\)"):
        module.apply(variables, jnp.zeros((2, 4, 4, 4)))
    with pytest.raises(ValueError, match="64"):
        module.apply(variables, jnp.zeros((2, 63)), inverse=True)
    with pytest.raises(ValueError, match="Glow inverse"):
        module.apply(variables, jnp.zeros((2, 8, 8, 1)), inverse=True)


def test_glow_latent_is_ordered_factored_halves_then_last_level():
    """With passthrough splits and identity steps the latent is a fixed rearrangement of x."""
    layer = built("glow_passthrough")
    x = layer.x
    # exp(tanh(0)) = 1, so zeroed couplings are the identity (sigmoid(0 + 2) is not)
    module = layer.module.clone(scale_fn="exp_tanh")
    params = jax.tree_util.tree_map_with_path(_identity_param, layer.variables["params"])
    z, ld = module.apply({"params": params}, x)
    np.testing.assert_allclose(ld, 0.0, atol=1e-12)
    s1 = jnp.reshape(x, (BATCH, 4, 2, 4, 2, 1)).transpose(0, 1, 3, 2, 4, 5).reshape(BATCH, 4, 4, 4)
    out1 = s1[..., 2:].reshape(BATCH, -1)
    s2 = jnp.reshape(s1[..., :2], (BATCH, 2, 2, 2, 2, 2)).transpose(0, 1, 3, 2, 4, 5)
    np.testing.assert_allclose(z, jnp.concatenate([out1, s2.reshape(BATCH, -1)], -1), atol=1e-12)


def _identity_param(path, p):
    keys = [getattr(k, "key", None) for k in path]
    if "actnorm" in keys or "coupling" in keys or keys[-1] in ("lower", "upper"):
        return jnp.zeros_like(p)
    if keys[-1] == "s":
        return jnp.ones_like(p)
    return p


# ActNorm data-dependent initialisation ---------------------------------------------------

def _skewed_batch(seed, shape, scale=(0.5, 2.0, 7.0), shift=(-3.0, 0.0, 5.0)):
    x = np.random.default_rng(seed).standard_normal(shape)
    return jnp.asarray(x * np.array(scale) + np.array(shift))


@pytest.mark.parametrize("shape", [(16, 4, 4, 3), (64, 3)])
def test_actnorm_data_init_normalises_first_batch(shape):
    x = _skewed_batch(1, shape)
    module = ActNorm()
    variables = module.init(rng_key(0), x)
    y, ld = module.apply(variables, x)
    axes = tuple(range(len(shape) - 1))
    np.testing.assert_allclose(jnp.mean(y, axes), 0.0, atol=1e-10)
    np.testing.assert_allclose(jnp.std(y, axes), 1.0, rtol=1e-5)
    per_position = math.prod(shape[1:-1])
    np.testing.assert_allclose(ld, -per_position * np.sum(np.log(np.std(x, axes))), rtol=1e-5)


def test_actnorm_restored_params_are_stored_not_recomputed():
    x = _skewed_batch(1, (16, 4, 4, 3))
    x_other = _skewed_batch(2, (16, 4, 4, 3), scale=(3.0, 0.1, 1.0),
                            shift=(2.0, -1.0, 0.5))
    module = ActNorm()
    variables = module.init(rng_key(0), x)
    y_other = module.apply(variables, x_other)[0]
    axes = (0, 1, 2)
    # applying to a different batch uses the stored statistics ...
    p = variables["params"]
    np.testing.assert_allclose(y_other, (x_other + p["loc"]) * jnp.exp(p["log_scale"]), atol=1e-12)
    assert np.max(np.abs(jnp.mean(y_other, axes))) > 0.5
    assert np.max(np.abs(jnp.std(y_other, axes) - 1.0)) > 0.5
    # ... and so does a serialised-then-restored copy, even when the template would normalise it
    template = module.init(rng_key(0), x_other)
    restored = serialization.from_bytes(template, serialization.to_bytes(variables))
    np.testing.assert_array_equal(module.apply(restored, x_other)[0], y_other)
    assert not np.allclose(module.apply(template, x_other)[0], y_other)


def test_actnorm_inside_flow_step_is_data_initialised():
    layer = built("flow_step")
    _, state = layer.module.apply(layer.initial, layer.x, capture_intermediates=True)
    y_actnorm = state["intermediates"]["actnorm"]["__call__"][0][0]
    assert np.max(np.abs(jnp.mean(layer.x, (0, 1, 2)))) > 0.05  # the input is not normalised
    np.testing.assert_allclose(jnp.mean(y_actnorm, (0, 1, 2)), 0.0, atol=1e-10)
    np.testing.assert_allclose(jnp.std(y_actnorm, (0, 1, 2)), 1.0, rtol=1e-5)


def test_actnorm_without_data_init_is_identity():
    x = _skewed_batch(1, (4, 3))
    module = ActNorm(data_init=False)
    variables = module.init(rng_key(0), x)
    y, ld = module.apply(variables, x)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(ld, 0.0)
