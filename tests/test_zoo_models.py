"""Every registered zoo model rebuilds its architecture (at a tiny scale) and has a valid card.

The architectures are rebuilt through the code path `create` and `load` use (``FlowModel.init``),
with only the sizes shrunk: one step per level, 8 hidden channels, a one-layer deep-NIF prior.
Levels, image shape, head, latent size and the layer choices stay as registered. Big images are
only traced (``jax.eval_shape``); Fashion-MNIST-sized ones also run forward on two images.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nif_zoo import cards, pretrained, registry
from nif_zoo.config import ModelConfig
from nif_zoo.hyperbolic import bench as vae_bench
from nif_zoo.hyperbolic import cards as vae_cards
from nif_zoo.hyperbolic.config import HVAEConfig
from nif_zoo.hyperbolic.vae import HVAE
from nif_zoo.models import FlowModel
from nif_zoo.publish import metrics_from_bench

ROOT = registry.DEFAULT_MANIFEST.parent
MODELS = registry.load_manifest(registry.DEFAULT_MANIFEST)["models"]
NAMES = sorted(MODELS)
SMALL_IMAGES = 28 * 28 * 1  # at most this many numbers per image: run forward for real
# Compile without LLVM optimisation: the forward runs once, on two images.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@pytest.fixture(autouse=True)
def shipped_manifest(monkeypatch):
    monkeypatch.delenv(registry.MANIFEST_ENV, raising=False)


def tiny(config: ModelConfig) -> ModelConfig:
    return config.replace(steps=1, hidden=8, prior_layers=1, prior_hidden=8)


def level_channels(config: ModelConfig) -> list[int]:
    """Channels seen by each level's steps: squeeze (x4), then half is factored out."""
    channels, c = [], config.image_shape[-1]
    for _ in range(config.levels):
        c *= 4
        channels.append(c)
        c -= c // 2
    return channels


def filled(abstract, seed: int = 0):
    """Parameters of the given shapes: small noise, unit-ish LU diagonals (invertible)."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        noise = rng.standard_normal(leaf.shape)
        if jax.tree_util.keystr(path).endswith("['s']"):  # the LU diagonal of a 1x1 conv
            return jnp.asarray(1.0 + 0.1 * noise, leaf.dtype)
        return jnp.asarray(0.05 * noise, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract)


def test_list_models_is_the_shipped_manifest():
    assert registry.list_models() == NAMES
    assert len(NAMES) >= 15


def is_vae(name: str) -> bool:
    return MODELS[name]["architecture"].get("kind") == "hvae"


FLOWS = [name for name in NAMES if not is_vae(name)]
VAES = [name for name in NAMES if is_vae(name)]


@pytest.mark.parametrize("name", FLOWS)
def test_architecture_rebuilds_at_a_tiny_scale(name):
    config = ModelConfig.from_dict(MODELS[name]["architecture"])
    small = tiny(config)
    for field in ("image_shape", "n_bits", "levels", "head", "latent_dim", "coupling", "scale_fn",
                  "invconv", "split", "noise", "logit_lambda"):
        assert getattr(small, field) == getattr(config, field), field

    module = FlowModel(small)
    x = jax.ShapeDtypeStruct((2, *small.image_shape), jnp.float32)
    key = jax.random.key(0)
    # Initialisation runs the whole forward pass (data-dependent ActNorm): trace it only.
    log_prob, variables = jax.eval_shape(module.init_with_output, key, x)
    assert log_prob.shape == (2,)
    params = variables["params"]

    levels = params["backbone"]
    glow = small.backbone == "glow"  # else the Self Normalizing Flows paper's dense or CNN flow
    assert {k for k in levels if k.startswith("level")} == {
        f"level{i}" for i in range(small.levels) if glow
    }
    for level, c in enumerate(level_channels(small) if glow else []):
        step = levels[f"level{level}"]["step"]
        assert step["actnorm"]["loc"].shape == (small.steps, c)
        invconv = step["invconv"]
        if small.invconv == "lu":
            assert invconv["lu"]["lower"].shape == (small.steps, c, c)
        elif small.linear == "selfnorm":
            assert invconv["kernel"].shape == (small.steps, 1, 1, c, c)
        else:
            assert invconv["kernel"].shape == (small.steps, c, c)
        assert step["coupling"]["net"]["Conv_0"]["kernel"].shape[-1] == small.hidden
    if small.head == "normal":
        assert "head" not in params
    else:
        head = params["head"] if small.head == "nif" else params["head"]["nif"]
        assert head["a"].shape == (small.dim, small.latent_dim)
        assert head["b"].shape == (small.dim,)
        assert head["log_var"].shape == ((small.dim,) if small.noise == "diag" else (1,))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))

    samples = jax.eval_shape(
        lambda p: module.apply({"params": p}, key, 2, method="sample"), params)
    assert samples.shape == (2, *small.image_shape)

    if small.dim <= SMALL_IMAGES:
        images = jax.random.uniform(jax.random.key(1), (2, *small.image_shape), jnp.float32) - 0.5
        forward = jax.jit(
            lambda p, x: module.apply({"params": p}, x, key, method="objective"))
        weights = filled(params)
        compiled = forward.lower(weights, images).compile(compiler_options=FAST_COMPILE)
        log_prob = np.asarray(compiled(weights, images))
        assert log_prob.shape == (2,)
        assert np.all(np.isfinite(log_prob)), log_prob


@pytest.mark.parametrize("name", VAES)
def test_vae_architecture_rebuilds_and_runs(name):
    """VAEs are small: the registered architecture itself, on two rows, with filled weights."""
    config = HVAEConfig.from_dict(MODELS[name]["architecture"])
    module = HVAE(config)
    rows = jax.ShapeDtypeStruct((2, config.data_dim), jnp.float32)
    params = jax.eval_shape(module.init, jax.random.key(0), rows, jax.random.key(1))["params"]
    assert params["encoder_hidden"]["kernel"].shape == (config.data_dim, config.hidden)
    assert params["decoder_out"]["kernel"].shape == (config.hidden, config.data_dim)
    assert ("raw_radius" in params) == (config.hyperbolic and config.learn_radius)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, config.data_dim)) > 0.5, jnp.float32)
    forward = jax.jit(lambda p, x: module.apply({"params": p}, x, jax.random.key(2)))
    weights = jax.tree.map(lambda leaf: leaf * 0.1, filled(params))
    elbo = np.asarray(forward.lower(weights, x).compile(compiler_options=FAST_COMPILE)(weights, x))
    assert elbo.shape == (2,) and np.all(np.isfinite(elbo)), elbo


@pytest.mark.parametrize("name", NAMES)
def test_card_exists_and_parses(name):
    entry = MODELS[name]
    path = ROOT / entry["card"]
    assert path.is_file(), f"{name} has no card at {path}"
    front, body = cards.parse_card(path.read_text(encoding="utf-8"))
    assert front["library_name"] == "nif_zoo"
    assert front["license"] == "apache-2.0"
    assert front["datasets"] == [entry["data"]["dataset"]]
    snf = "self-normalizing-flows" in front["tags"]  # a Self Normalizing Flows model
    tags = vae_cards.TAGS if is_vae(name) else cards.SNF_TAGS if snf else cards.TAGS
    assert set(tags) <= set(front["tags"])
    assert body.lstrip().startswith(f"# {name}\n")
    if is_vae(name):
        assert vae_cards.train_command(name, HVAEConfig.from_dict(entry["architecture"])) in body
    else:
        assert f"nif-zoo train {entry['train_config']}" in body
    assert (ROOT / entry["train_config"]).is_file(), entry["train_config"]
    if entry["status"] == "recipe":
        assert "No weights exist yet" in body
    else:
        assert f'nif_zoo.load("{name}")' in body
        if entry["metrics"]:  # published without `nif-zoo bench` figures: no model index
            assert front["model-index"][0]["name"] == name
        files = set(entry["files"])
        assert {pretrained.CONFIG_FILE, pretrained.CHECKSUM_FILE} <= files
        assert any(f.startswith(f"{pretrained.CHECKPOINT_DIR}/") for f in files)


BENCHED = [n for n in NAMES if MODELS[n].get("metrics_command") == f"nif-zoo bench {n}"]


@pytest.mark.parametrize("name", BENCHED)
def test_published_figures_are_those_of_its_bench_json(name):
    """The manifest and card carry exactly what `nif-zoo bench NAME` wrote, no stale figure."""
    path = ROOT / "benchmarks" / "results" / f"{name}.json"
    assert path.is_file(), f"{name} names `nif-zoo bench {name}` but {path} is missing"
    bench = json.loads(path.read_text())
    assert bench.get("model", bench.get("name")) == name  # VAE benches say "model", flow ones "name"
    expected = vae_bench.metrics(bench) if is_vae(name) else metrics_from_bench(bench)
    assert MODELS[name]["metrics"] == expected
    body = cards.parse_card((ROOT / MODELS[name]["card"]).read_text(encoding="utf-8"))[1]
    assert f"in {bench['seconds']:.0f} s ({bench['data']})" in body
