"""FlowModel (logit -> Glow -> prior head) on a tiny configuration, for every head.

One ``model.init`` (deep NIF head: it holds the Gaussian NIF head's parameters too) is shared:
the 'nif' and 'normal' models take the matching sub-trees, checked against
``jax.eval_shape(model.init)``. Each head's quantities are computed by one jitted call, so the
tiny Glow compiles a few times rather than once per method.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from nif_zoo.config import ModelConfig
from nif_zoo.heads.deep_nif import DeepNIFHead
from nif_zoo.layers.preprocess import dequantize, quantize
from nif_zoo.models import FlowModel

CONFIG = ModelConfig(image_shape=(8, 8, 1), levels=2, steps=2, hidden=8, head="deep_nif",
                     latent_dim=5, prior_hidden=8, prior_layers=2)
HEADS = ("normal", "nif", "deep_nif")
D, K, BATCH = 64, 5, 4


def rng_key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")  # compiles far faster than threefry on CPU


def model_for(head: str) -> FlowModel:
    return FlowModel(CONFIG.replace(head=head))


def images(seed: int, batch: int = BATCH) -> jax.Array:
    """Dequantised-looking images in [-1/2, 1/2): a smooth pattern plus noise."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(-1, 1, 8)
    pattern = 0.3 * np.outer(np.sin(2 * grid), np.cos(grid))[None, :, :, None]
    x = pattern + 0.1 * rng.standard_normal((batch, 8, 8, 1))
    return jnp.asarray(np.clip(x, -0.49, 0.49))


def perturb(params, seed: int, scale: float):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda p: (p + scale * rng.standard_normal(p.shape)).astype(p.dtype), params)


@functools.cache
def shared_params():
    params = jax.jit(model_for("deep_nif").init)(rng_key(0), images(0, 16))["params"]
    return {"backbone": perturb(params["backbone"], 1, 0.05),
            "head": perturb(params["head"], 2, 0.1)}


def variables_for(head: str) -> dict:
    params = shared_params()
    if head == "normal":
        return {"params": {"backbone": params["backbone"]}}
    if head == "nif":
        return {"params": {"backbone": params["backbone"], "head": params["head"]["nif"]}}
    return {"params": params}


@functools.cache
def _evaluate_all() -> dict:
    """Every quantity the tests check, for every head, from one jitted call.

    Glow passes dominate compile time; in one program XLA merges the identical ones (every head
    runs the same backbone forward on ``x``, and the 'nif' and 'deep_nif' heads share A, b,
    Sigma). Decoded and sampled images are re-encoded as one batch.
    """
    x = images(3)
    us = {head: jnp.asarray(np.random.default_rng(4).standard_normal(
        (BATCH, D if head == "normal" else K))) for head in HEADS}

    def evaluate_head(head, variables, x, u):
        model = model_for(head)

        def call(method, *args):
            return model.apply(variables, *args, method=method)

        out = dict(latent=call("latent", x), encode=call("encode", x),
                   decoded=call("decode", u, None, 0.0))
        generated = out["decoded"]
        if head != "deep_nif":
            out["log_prob"] = call("log_prob", x)
            out["bits"] = call("bits_per_dim", x)
        if head != "normal":
            out["elbo"] = call("elbo", x, rng_key(5), 3)
            out["samples_on"] = call("sample", rng_key(7), 3, 0.8, 0.0, jnp.float64)
            generated = jnp.concatenate([generated, out["samples_on"]])
        out["generated_latent"] = call("latent", generated)[0]
        out["generated_encoded"] = call("encode", generated)
        if head == "nif":
            out["log_prob_half"] = call("log_prob", x, 0.5)
            out["project"] = call("project", x)
            out["project_twice"] = call("project", out["project"])
        if head == "normal":  # the latent map's Jacobian, one example at a time
            flat = jax.vmap(jax.jacfwd(lambda v: call("latent", v.reshape(1, 8, 8, 1))[0][0]))
            out["jacobian"] = flat(x.reshape(BATCH, D))
        return out

    @jax.jit
    def evaluate(variables, x, us):
        return {head: evaluate_head(head, variables[head], x, us[head]) for head in HEADS}

    outs = evaluate({head: variables_for(head) for head in HEADS}, x, us)
    return {head: dict(x=x, u=us[head], **outs[head]) for head in HEADS}


def evaluated(head: str) -> dict:
    return _evaluate_all()[head]


def head_params(head):
    return jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64),
                                  variables_for(head)["params"].get("head"))


def test_shared_parameters_have_each_models_structure():
    x = images(0, 2)
    for head in HEADS:
        expected = jax.eval_shape(model_for(head).init, rng_key(0), x)
        got = jax.tree_util.tree_map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype),
                                     variables_for(head))
        assert got == expected, head


def test_latent_log_det_is_the_jacobian_of_logit_then_glow():
    out = evaluated("normal")
    z, log_det = out["latent"]
    assert z.shape == (BATCH, D) and log_det.shape == (BATCH,)
    jac = np.asarray(out["jacobian"])
    assert jac.shape == (BATCH, D, D)
    np.testing.assert_allclose(log_det, np.linalg.slogdet(jac)[1], rtol=1e-9)


@pytest.mark.parametrize("head", ["normal", "nif"])
def test_log_prob_is_backbone_log_det_plus_head_density(head):
    out = evaluated(head)
    z, log_det = (np.asarray(v) for v in out["latent"])
    if head == "normal":
        head_lp = stats.multivariate_normal(np.zeros(D), np.eye(D)).logpdf(z)
    else:
        p = head_params(head)
        cov = p["a"] @ p["a"].T
        head_lp = stats.multivariate_normal(p["b"], cov + np.diag(np.exp(p["log_var"]))).logpdf(z)
        head_lp_half = stats.multivariate_normal(  # manifold noise scaled by s = 0.5
            p["b"], cov + 0.25 * np.diag(np.exp(p["log_var"]))).logpdf(z)
        np.testing.assert_allclose(out["log_prob_half"], log_det + head_lp_half, rtol=1e-9)
    np.testing.assert_allclose(out["log_prob"], log_det + head_lp, rtol=1e-9)
    # and the backbone log-det is the Jacobian's (checked on the normal head's evaluation)
    np.testing.assert_allclose(log_det, evaluated("normal")["latent"][1], rtol=1e-12)


@pytest.mark.parametrize("head", ["normal", "nif"])
def test_bits_per_dim_by_hand(head):
    out = evaluated(head)
    log_prob = np.asarray(out["log_prob"])
    np.testing.assert_allclose(out["bits"], -log_prob / (D * math.log(2)) + CONFIG.n_bits,
                               rtol=1e-12)


def test_nif_elbo_is_below_log_prob():
    out = evaluated("nif")
    gap = np.asarray(out["log_prob"] - out["elbo"])
    assert np.all(gap > 1e-3)
    assert out["elbo"].shape == (BATCH,)


def test_deep_nif_elbo_is_backbone_log_det_plus_head_bound():
    out = evaluated("deep_nif")
    z, log_det = out["latent"]
    head = DeepNIFHead(D, K, CONFIG.noise, CONFIG.prior_layers, CONFIG.prior_hidden)
    bound = head.apply({"params": variables_for("deep_nif")["params"]["head"]}, z, rng_key(5), 3,
                       method="bound")
    np.testing.assert_allclose(out["elbo"], log_det + bound, rtol=1e-9)
    with pytest.raises(ValueError, match="elbo"):
        model_for("deep_nif").apply(variables_for("deep_nif"), out["x"], method="log_prob")


@pytest.mark.parametrize("head", HEADS)
def test_decode_at_zero_noise_then_encode_recovers_the_latent(head):
    out = evaluated(head)
    assert out["decoded"].shape == (BATCH, 8, 8, 1)
    np.testing.assert_allclose(out["generated_encoded"][:BATCH], out["u"], rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("head", ["nif", "deep_nif"])
def test_samples_at_zero_noise_lie_on_the_manifold(head):
    """``z = g(x)`` of an s = 0 sample is exactly ``A mu(z) + b``; a data image's is not."""
    out = evaluated(head)
    samples = out["samples_on"]
    assert samples.shape == (3, 8, 8, 1) and np.all(np.isfinite(samples))
    assert not np.allclose(samples[0], samples[1])
    p = head_params(head)
    p = p["nif"] if head == "deep_nif" else p

    def off_manifold(z, mu):
        return np.max(np.abs(np.asarray(z) - np.asarray(mu) @ p["a"].T - p["b"]), axis=-1)

    assert np.all(off_manifold(out["generated_latent"], out["generated_encoded"]) < 1e-7)
    assert np.all(off_manifold(out["latent"][0], out["encode"]) > 1e-2)


def test_project_is_idempotent():
    out = evaluated("nif")
    np.testing.assert_allclose(out["project_twice"], out["project"], atol=1e-8)
    assert np.max(np.abs(out["project"] - out["x"])) > 1e-2  # x is off the 5-d manifold


def test_normal_head_encode_and_decode_are_the_backbone():
    out = evaluated("normal")
    np.testing.assert_allclose(out["encode"], out["latent"][0], rtol=1e-12)
    np.testing.assert_allclose(out["generated_latent"], out["u"], rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("head", ["nif"])
def test_encode_is_the_heads_pseudo_inverse_of_the_latent(head):
    out = evaluated(head)
    z = np.asarray(out["latent"][0])
    p = head_params(head)
    w = np.exp(-0.5 * p["log_var"])
    mu = np.linalg.lstsq(p["a"] * w[:, None], ((z - p["b"]) * w).T, rcond=None)[0].T
    np.testing.assert_allclose(out["encode"], mu, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", ["log_prob", "encode", "elbo", "project"])
def test_wrong_image_shape_raises_value_error_naming_the_expected_shape(method):
    model, variables = model_for("nif"), variables_for("nif")
    for bad in (jnp.zeros((2, 8, 8, 3)), jnp.zeros((2, 16, 16, 1)), jnp.zeros((8, 8, 1))):
        with pytest.raises(ValueError, match=r"\(batch, 8, 8, 1\)"):
            model.apply(variables, bad, method=method)


def test_integer_images_raise_type_error():
    model, variables = model_for("nif"), variables_for("nif")
    for method in ("log_prob", "bits_per_dim", "encode"):
        with pytest.raises(TypeError, match="dequantize"):
            model.apply(variables, jnp.zeros((2, 8, 8, 1), jnp.int32), method=method)


@pytest.mark.parametrize("n_bits", [3, 5, 8])
def test_dequantize_quantize_round_trip(n_bits):
    rng = np.random.default_rng(n_bits)
    v = jnp.asarray(rng.integers(0, 2**n_bits, (3, 8, 8, 1)), jnp.int32)
    x, log_det = dequantize(rng_key(n_bits), v, n_bits, jnp.float64)
    assert x.dtype == jnp.float64 and x.shape == v.shape
    assert np.all(x >= -0.5) and np.all(x < 0.5)
    np.testing.assert_array_equal(quantize(x, n_bits), v)
    np.testing.assert_allclose(log_det, -D * n_bits * math.log(2), rtol=1e-12)
    # the noise fills each cell: x lies within a cell of width 2^-n above (v / 2^n - 1/2)
    offset = np.asarray(x) - (np.asarray(v) / 2**n_bits - 0.5)
    assert np.all(offset >= 0) and np.all(offset < 2.0**-n_bits)
    assert np.std(offset * 2**n_bits) > 0.2  # uniform noise, not a constant
    mid, _ = dequantize(None, v, n_bits, jnp.float64)
    np.testing.assert_allclose(mid, (np.asarray(v) + 0.5) / 2**n_bits - 0.5, rtol=1e-12)
    np.testing.assert_array_equal(quantize(mid, n_bits), v)
    with pytest.raises(TypeError, match="integer"):
        dequantize(None, x, n_bits)


def test_bits_per_dim_of_dequantised_pixels_counts_the_dequantisation():
    """bpd = -(log p(x) + log_det of dequantisation) / (D ln 2): the two forms agree."""
    out = evaluated("nif")
    v = quantize(out["x"], CONFIG.n_bits)
    _, log_det = dequantize(None, v, CONFIG.n_bits, jnp.float64)
    np.testing.assert_allclose(out["bits"], -(out["log_prob"] + log_det) / (D * math.log(2)),
                               rtol=1e-12)
