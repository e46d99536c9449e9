"""Whole self-normalizing models inverted through R or exactly (``ModelConfig.selfnorm_inverse``)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nif_zoo.config import ModelConfig
from nif_zoo.models import FlowModel

# tiny programs run once: compile them without LLVM's optimisations (as test_layers.py does)
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

TINY = {
    "dense": dict(backbone="dense", steps=2),
    "cnn": dict(backbone="cnn", levels=2, steps=2),
    "glow": dict(backbone="glow", levels=1, steps=2, hidden=4, invconv="full", split="learned"),
}


def _config(backbone: str, inverse: str) -> ModelConfig:
    return ModelConfig(image_shape=(4, 4, 1), n_bits=8, logit_lambda=1e-6, linear="selfnorm",
                       selfnorm_inverse=inverse, **TINY[backbone])


def _images(n: int = 3) -> jax.Array:
    return jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (n, 4, 4, 1)))


def _map_inverse_kernels(params, fn):
    """``params`` with every self-normalizing layer's ``R`` replaced by ``fn(W, R)``."""
    if not isinstance(params, dict):
        return params
    if "inverse_kernel" in params:
        return {**params, "inverse_kernel": fn(params["kernel"], params["inverse_kernel"])}
    return {k: _map_inverse_kernels(v, fn) for k, v in params.items()}


def _params(backbone: str):
    """Trained-looking parameters: every leaf moved, so that R is far from W^-1."""
    model = FlowModel(_config(backbone, "approximate"))
    params = fast_jit(model.init)(jax.random.key(0, impl="rbg"), _images())["params"]
    rng = np.random.default_rng(1)
    return jax.tree.map(lambda p: p + 0.1 * rng.standard_normal(p.shape), params)


def _exact_r(kernel, _):
    """``W^-1`` as a kernel: dense (D, D) or scanned 1x1 (steps, 1, 1, c, c)."""
    if kernel.ndim == 2:
        return jnp.linalg.inv(kernel)
    return jnp.linalg.inv(kernel[:, 0, 0])[:, None, None]


def _round_trip_error(backbone: str, inverse: str, params) -> float:
    """Largest ``|x - g(f(x))|`` over pixels: encode, then decode back to images."""
    model = FlowModel(_config(backbone, inverse))
    x = _images()
    back = fast_jit(functools.partial(model.apply, method=FlowModel.project))({"params": params}, x)
    return float(jnp.max(jnp.abs(back - x)))


@pytest.mark.parametrize("backbone", sorted(TINY))
def test_exact_inverse_round_trips_where_r_does_not(backbone):
    params = _params(backbone)
    assert _round_trip_error(backbone, "exact", params) < 1e-8
    assert _round_trip_error(backbone, "approximate", params) > 1e-3


@pytest.mark.parametrize("backbone", ["dense", "glow"])  # a 3x3 convolution has no 3x3 inverse
def test_both_inverses_agree_when_r_is_w_inverse(backbone):
    params = _map_inverse_kernels(_params(backbone), _exact_r)
    assert _round_trip_error(backbone, "approximate", params) < 1e-8
    model = {inverse: FlowModel(_config(backbone, inverse)) for inverse in ("approximate", "exact")}
    z = jnp.asarray(np.random.default_rng(2).standard_normal((3, 16)))
    decoded = {k: fast_jit(functools.partial(m.apply, method=FlowModel.decode))({"params": params}, z)
               for k, m in model.items()}
    np.testing.assert_allclose(decoded["approximate"], decoded["exact"], atol=1e-10)


def test_both_options_share_parameters_and_log_densities():
    params = _params("cnn")
    x = _images()
    log_p = {inverse: fast_jit(functools.partial(FlowModel(_config("cnn", inverse)).apply,
                                                 method=FlowModel.log_prob))({"params": params}, x)
             for inverse in ("approximate", "exact")}
    np.testing.assert_array_equal(log_p["approximate"], log_p["exact"])


def test_old_configs_load_with_the_approximate_inverse_and_bad_values_fail():
    old = ModelConfig().to_dict()
    del old["selfnorm_inverse"]
    assert ModelConfig.from_dict(old).selfnorm_inverse == "approximate"
    exact = ModelConfig(selfnorm_inverse="exact")
    assert ModelConfig.from_dict(exact.to_dict()) == exact
    with pytest.raises(ValueError, match="selfnorm_inverse"):
        ModelConfig(selfnorm_inverse="solve")
