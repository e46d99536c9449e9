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
from nif_zoo.glow import Glow
from nif_zoo.heads import woodbury
from nif_zoo.heads.deep_nif import DeepNIFHead
from nif_zoo.layers.preprocess import dequantize, quantize
from nif_zoo.models import FlowModel

CONFIG = ModelConfig(image_shape=(8, 8, 1), levels=2, steps=2, hidden=8, head="deep_nif",
                     latent_dim=5, prior_hidden=8, prior_layers=2)
HEADS = ("normal", "nif", "deep_nif")
D, K, BATCH = 64, 5, 4


# LLVM's optimisation passes are most of XLA:CPU's compile time, and these programs are tiny and
# run once: compile them without (same HLO, same arithmetic; about twice as fast to compile).
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


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


def logit_p(x):
    """``lambda + (1 - 2 lambda) (x + 1/2)``: the logit transform's argument (math note)."""
    return CONFIG.logit_lambda + (1 - 2 * CONFIG.logit_lambda) * (x + 0.5)


def perturb(params, seed: int, scale: float):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda p: (p + scale * rng.standard_normal(p.shape)).astype(p.dtype), params)


@functools.cache
def shared_params():
    params = fast_jit(model_for("deep_nif").init)(rng_key(0), images(0, 16))["params"]
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
def evaluated() -> dict:
    """Every model quantity the tests check, from a few jitted functions.

    Glow passes dominate compile time (and one big program compiles slower than its parts), so
    the forward-only quantities of every head form one function, reused on decoded and sampled
    images of the same batch size, and ``project`` is compiled once and applied twice.
    """
    variables = {head: variables_for(head) for head in HEADS}

    def call(head, method, *args):
        return model_for(head).apply(variables[head], *args, method=method)

    @fast_jit
    def forward(x):
        out = {}
        for head in HEADS:
            out[f"{head}.latent"] = call(head, "latent", x)
            out[f"{head}.encode"] = call(head, "encode", x)
        for head in ("normal", "nif"):
            out[f"{head}.log_prob"] = call(head, "log_prob", x)
            out[f"{head}.bits"] = call(head, "bits_per_dim", x)
            out[f"{head}.bits5"] = call(head, "bits_per_dim", x, 5)
        out["nif.log_prob_half"] = call("nif", "log_prob", x, 0.5)
        out["nif.elbo"] = call("nif", "elbo", x)
        out["deep_nif.elbo"] = call("deep_nif", "elbo", x, rng_key(5), 3)
        # the backbone alone on the logit of x (its log-det is checked against autodiff in
        # test_layers.py, case glow_passthrough: the same configuration)
        c = CONFIG
        glow = Glow(image_shape=c.image_shape, levels=c.levels, steps=c.steps, hidden=c.hidden,
                    additive=c.coupling == "additive", scale_fn=c.scale_fn, lu=c.invconv == "lu",
                    split=c.split, unroll=c.unroll)
        out["glow"] = glow.apply({"params": variables["normal"]["params"]["backbone"]},
                                 jnp.log(logit_p(x)) - jnp.log1p(-logit_p(x)))
        # the same bound from a stand-alone head on the latent (XLA shares the work)
        head = DeepNIFHead(D, K, CONFIG.noise, CONFIG.prior_layers, CONFIG.prior_hidden)
        out["deep_nif.head_bound"] = head.apply(
            {"params": variables["deep_nif"]["params"]["head"]}, out["deep_nif.latent"][0],
            rng_key(5), 3, method="bound")
        return out

    project = fast_jit(lambda x: call("nif", "project", x))
    x = images(3)
    u = jnp.asarray(np.random.default_rng(4).standard_normal((BATCH, K)))
    out = dict(x=x, u=u, latent=forward(x)["normal.latent"], **forward(x))
    out["decoded"] = fast_jit(lambda u: call("nif", "decode", u, None, 0.0))(u)
    out["samples_on"] = fast_jit(
        lambda: call("deep_nif", "sample", rng_key(7), BATCH, 0.8, 0.0, jnp.float64))()
    out["decoded.forward"] = forward(out["decoded"])
    out["samples_on.forward"] = forward(out["samples_on"])
    out["project"] = project(x)
    out["project_twice"] = project(out["project"])
    return out


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


def test_latent_is_logit_then_glow():
    out = evaluated()
    z, log_det = out["latent"]
    assert z.shape == (BATCH, D) and log_det.shape == (BATCH,)
    z_glow, log_det_glow = out["glow"]
    np.testing.assert_allclose(z, z_glow, rtol=1e-12, atol=1e-12)
    p = np.asarray(logit_p(out["x"])).reshape(BATCH, -1)
    log_det_logit = np.sum(np.log(1 - 2 * CONFIG.logit_lambda) - np.log(p) - np.log1p(-p), 1)
    np.testing.assert_allclose(log_det, log_det_glow + log_det_logit, rtol=1e-10)
    assert np.all(np.abs(log_det_glow) > 1e-2) and np.all(np.abs(log_det_logit) > 1)
    for head in HEADS:  # one backbone
        np.testing.assert_array_equal(out[f"{head}.latent"][1], log_det)


@pytest.mark.parametrize("head", ["normal", "nif"])
def test_log_prob_is_backbone_log_det_plus_head_density(head):
    out = evaluated()
    z, log_det = (np.asarray(v) for v in out[f"{head}.latent"])
    if head == "normal":
        head_lp = stats.multivariate_normal(np.zeros(D), np.eye(D)).logpdf(z)
    else:
        p = head_params(head)
        cov = p["a"] @ p["a"].T
        head_lp = stats.multivariate_normal(p["b"], cov + np.diag(np.exp(p["log_var"]))).logpdf(z)
        head_lp_half = stats.multivariate_normal(  # manifold noise scaled by s = 0.5
            p["b"], cov + 0.25 * np.diag(np.exp(p["log_var"]))).logpdf(z)
        np.testing.assert_allclose(out[f"{head}.log_prob_half"], log_det + head_lp_half, rtol=1e-9)
    np.testing.assert_allclose(out[f"{head}.log_prob"], log_det + head_lp, rtol=1e-9)


@pytest.mark.parametrize("head", ["normal", "nif"])
def test_bits_per_dim_by_hand(head):
    out = evaluated()
    log_prob = np.asarray(out[f"{head}.log_prob"])
    np.testing.assert_allclose(out[f"{head}.bits"], -log_prob / (D * math.log(2)) + CONFIG.n_bits,
                               rtol=1e-12)
    assert CONFIG.n_bits != 5
    np.testing.assert_allclose(out[f"{head}.bits5"], -log_prob / (D * math.log(2)) + 5, rtol=1e-12)


def test_nif_elbo_is_backbone_log_det_plus_head_elbo_and_below_log_prob():
    out = evaluated()
    z, log_det = out["nif.latent"]
    p = head_params("nif")
    head_elbo = fast_jit(woodbury.elbo)(z, *(jnp.asarray(p[name]) for name in ("a", "b", "log_var")))
    np.testing.assert_allclose(out["nif.elbo"], log_det + head_elbo, rtol=1e-9)
    assert np.all(np.asarray(out["nif.log_prob"] - out["nif.elbo"]) > 1e-3)


def test_deep_nif_elbo_is_backbone_log_det_plus_head_bound():
    out = evaluated()
    log_det = out["deep_nif.latent"][1]
    np.testing.assert_allclose(out["deep_nif.elbo"], log_det + out["deep_nif.head_bound"],
                               rtol=1e-9)
    with pytest.raises(ValueError, match="elbo"):
        model_for("deep_nif").apply(variables_for("deep_nif"), out["x"], method="log_prob")


def test_decode_at_zero_noise_then_encode_recovers_the_latent():
    out = evaluated()
    assert out["decoded"].shape == (BATCH, 8, 8, 1)
    for head in ("nif", "deep_nif"):
        np.testing.assert_allclose(out["decoded.forward"][f"{head}.encode"], out["u"], rtol=1e-7,
                                   atol=1e-7)


def _off_manifold(z, mu):
    """``max |z - (A mu + b)|`` per example, with the shared Gaussian NIF parameters."""
    p = head_params("nif")
    return np.max(np.abs(np.asarray(z) - np.asarray(mu) @ p["a"].T - p["b"]), axis=-1)


def test_samples_at_zero_noise_lie_on_the_manifold():
    """``z = g(x)`` of an s = 0 sample is exactly ``A mu(z) + b``; a data image's is not."""
    out = evaluated()
    samples = out["samples_on"]
    assert samples.shape == (BATCH, 8, 8, 1) and np.all(np.isfinite(samples))
    assert not np.allclose(samples[0], samples[1])
    for name in ("samples_on", "decoded"):
        fwd = out[f"{name}.forward"]
        assert np.all(_off_manifold(fwd["nif.latent"][0], fwd["nif.encode"]) < 1e-7)
    assert np.all(_off_manifold(out["latent"][0], out["nif.encode"]) > 1e-2)


def test_project_is_idempotent():
    out = evaluated()
    np.testing.assert_allclose(out["project_twice"], out["project"], atol=1e-8)
    assert np.max(np.abs(out["project"] - out["x"])) > 1e-2  # x is off the 5-d manifold


def test_encoders():
    out = evaluated()
    np.testing.assert_allclose(out["normal.encode"], out["latent"][0], rtol=1e-12)
    np.testing.assert_allclose(out["deep_nif.encode"], out["nif.encode"], rtol=1e-12)
    # the NIF encoder is the Sigma-weighted pseudo-inverse of the latent
    z = np.asarray(out["latent"][0])
    p = head_params("nif")
    w = np.exp(-0.5 * p["log_var"])
    mu = np.linalg.lstsq(p["a"] * w[:, None], ((z - p["b"]) * w).T, rcond=None)[0].T
    np.testing.assert_allclose(out["nif.encode"], mu, rtol=1e-8, atol=1e-10)


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
    out = evaluated()
    v = quantize(out["x"], CONFIG.n_bits)
    _, log_det = dequantize(None, v, CONFIG.n_bits, jnp.float64)
    bits = -(out["nif.log_prob"] + log_det) / (D * math.log(2))
    np.testing.assert_allclose(out["nif.bits"], bits, rtol=1e-12)
