"""The hyperbolic VAE end to end: data, posterior density, training, saving and nif_zoo.load."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nif_zoo
from nif_zoo import hub, registry
from nif_zoo.hyperbolic import branching_diffusion, lorentz, train, wrapped_normal
from nif_zoo.hyperbolic.config import HVAEConfig, for_dataset
from nif_zoo.hyperbolic.pretrained import PretrainedVAE
from nif_zoo.hyperbolic.vae import HVAE

TINY = dict(hidden=16, flow_hidden=8)
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def test_branching_diffusion_has_the_papers_shape_and_is_seeded():
    points, depths = branching_diffusion.generate(seed=0)
    assert points.shape == (315, 50) and points.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(depths), [5 * 2**d for d in range(6)])
    np.testing.assert_allclose(points.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(points.std(0), 1, atol=1e-5)
    np.testing.assert_array_equal(points, branching_diffusion.generate(seed=0)[0])
    assert not np.allclose(points, branching_diffusion.generate(seed=1)[0])
    train_rows, _ = branching_diffusion.load("train")
    test_rows, _ = branching_diffusion.load("test")
    assert len(train_rows) == 220 and len(test_rows) == 95
    assert not set(map(bytes, train_rows)) & set(map(bytes, test_rows))


@pytest.mark.parametrize("posterior", ["whc", "euclidean"])
def test_posterior_density_matches_the_inverse_route(posterior):
    """log q(z_K) from sampling equals log q_0(f^-1(z_K)) + the forward log-dets."""
    config = for_dataset("bdp", 3, posterior, **TINY)
    model = HVAE(config)
    x = jnp.asarray(branching_diffusion.load("test")[0][:4], jnp.float64)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x, jax.random.key(1))["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape)), shapes)

    def both_routes(params):
        def route(module):
            z, log_q = module.sample_posterior(x, jax.random.key(2), 2)
            mean, scale = module.posterior_base(x)
            back, total = z.reshape(-1, z.shape[-1]), 0.0
            for layer in reversed(module.flow):
                back, log_det = layer(back, inverse=False)
                total = total + log_det
            back = back.reshape(z.shape)
            if config.hyperbolic:
                base = wrapped_normal.tangent_log_prob(
                    wrapped_normal.to_tangent(mean, back, module.radius), scale, module.radius)
            else:
                base = -0.5 * jnp.sum(((back - mean) / scale) ** 2 + 2 * jnp.log(scale)
                                      + jnp.log(2 * jnp.pi), -1)
            return log_q, base + total.reshape(base.shape)

        return nn_apply(model, params, route)

    log_q, reference = jax.jit(both_routes, compiler_options=FAST)(params)
    np.testing.assert_allclose(log_q, reference, rtol=1e-7, atol=1e-7)


def nn_apply(model, params, fn):
    return model.apply({"params": params}, method=lambda module: fn(module))


def test_tiny_hvae_trains_saves_resumes_and_loads(tmp_path):
    config = for_dataset("bdp", 2, "wrapped", **TINY)  # the flows' compiles would double the time
    settings = train.TrainConfig(steps=20, batch_size=32, log_every=10, checkpoint_every=10)
    workdir = tmp_path / "bdp-hvae.d2"
    summary = train.train_and_evaluate(config, settings, workdir)
    assert summary["step"] == 20 and np.isfinite(summary["test_elbo"])
    assert summary["nonfinite_total"] == 0 and 0 < summary["radius"] < 10
    assert json.loads((workdir / "result.json").read_text())["step"] == 20

    resumed = train.train_and_evaluate(config, dataclasses.replace(settings, steps=30), workdir)
    assert resumed["start_step"] == 20 and resumed["step"] == 30
    with pytest.raises(ValueError, match="another model"):
        train.train_and_evaluate(dataclasses.replace(config, latent=3), settings, workdir)

    model = nif_zoo.load(str(workdir / "model"))
    assert isinstance(model, PretrainedVAE) and model.config == config
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(model.params))
    x = branching_diffusion.load("test")[0]  # all 95 rows: the shape training evaluated (compiled)
    z = model.encode(x)
    assert z.shape == (95, 3) and lorentz.manifold_residual(z, model.radius).max() < 1e-5
    assert model.decode(z).shape == (95, 50) and model.sample(jax.random.key(0), 4).shape == (4, 50)
    assert np.all(np.linalg.norm(model.to_poincare(z), axis=-1) < model.radius)
    log_p = model.log_prob(x, k=40, chunk=20)
    assert log_p.shape == (95,) and np.all(np.isfinite(log_p))
    in_memory = PretrainedVAE(config, model.params).log_prob(x, k=40, chunk=20)
    np.testing.assert_allclose(log_p, in_memory, rtol=1e-6)
    assert np.mean(log_p) > np.mean(model.elbo(x)) - 0.5  # K draws tighten the bound


def test_load_by_name_through_the_manifest(tmp_path, monkeypatch):
    config = HVAEConfig(dataset="bdp", data_dim=50, latent=2, posterior="whc", flow_layers=1, **TINY)
    shapes = jax.eval_shape(HVAE(config).init, jax.random.key(0), jnp.zeros((1, 50), jnp.float32),
                            jax.random.key(1))["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)
    folder = PretrainedVAE(config, params, data=train.DATA_SPEC["bdp"]).save_pretrained(
        tmp_path / "mirror" / "bdp-hvae-whc.d2", card="# bdp-hvae-whc.d2\n")
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "bdp-hvae-whc.d2.md").write_text("# card\n")
    entry = {"status": "published", "description": "A tiny hyperbolic VAE for tests.",
             "architecture": config.to_dict(), "data": train.DATA_SPEC["bdp"],
             "hf_repo": "nif-zoo/bdp-hvae-whc", "revision": None,
             "mirror": "mirror/bdp-hvae-whc.d2", "files": hub.describe_folder(folder), "metrics": {},
             "metrics_command": None, "card": "cards/bdp-hvae-whc.d2.md",
             "train_config": "nif_zoo/hyperbolic/train.py"}
    manifest = tmp_path / "manifest.json"
    registry.write_manifest({"format_version": 1, "models": {"bdp-hvae-whc.d2": entry}}, manifest)
    monkeypatch.setenv(registry.MANIFEST_ENV, str(manifest))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    model = nif_zoo.load("bdp-hvae-whc.d2")
    assert isinstance(model, PretrainedVAE) and model.config == config
    jax.tree.map(np.testing.assert_array_equal, model.params, params)
    with pytest.raises(registry.ManifestError, match="hvae"):
        registry.write_manifest({"format_version": 1, "models": {"bad": {
            **entry, "architecture": {**config.to_dict(), "posterior": "nope"}}}}, manifest)
