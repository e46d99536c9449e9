import json
import os
from pathlib import Path

import pytest

from nif_zoo import cards, hub, registry
from nif_zoo.config import ModelConfig

GRID = {
    f"{prefix}-{model}"
    for prefix in ("fmnist", "cifar10", "celeba")
    for model in ("nf", "nif64", "nif128", "nif256", "nif512")
}
SHIPPED = registry.DEFAULT_MANIFEST


@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.delenv(registry.MANIFEST_ENV, raising=False)
    return registry.load_manifest()


def recipe(name: str = "fmnist-nf") -> dict:
    return json.loads(SHIPPED.read_text())["models"][name]


def write_manifest(root: Path, models: dict, format_version: int = 1) -> Path:
    """Write a manifest and a card for every entry under ``root``."""
    for name, entry in models.items():
        card = root / entry["card"]
        card.parent.mkdir(parents=True, exist_ok=True)
        card.write_text(f"---\nlibrary_name: nif_zoo\n---\n# {name}\n")
    path = root / "manifest.json"
    path.write_text(json.dumps({"format_version": format_version, "models": models}, indent=2))
    return path


@pytest.fixture
def temp_manifest(tmp_path, monkeypatch):
    """A one-recipe manifest in tmp_path, selected through NIF_ZOO_MANIFEST."""
    path = write_manifest(tmp_path, {"fmnist-nf": recipe()})
    monkeypatch.setenv(registry.MANIFEST_ENV, str(path))
    return path


@pytest.fixture
def published(tmp_path):
    """A published entry whose files live in a mirror folder under tmp_path."""
    mirror = tmp_path / "zoo" / "fmnist-nif64.small"
    (mirror / "params").mkdir(parents=True)
    (mirror / "params" / "weights.msgpack").write_bytes(os.urandom(500))
    (mirror / "samples.png").write_bytes(b"\x89PNG fake")
    entry = recipe("fmnist-nif64")
    entry.update(
        status="published",
        description="NIF-64 on 3-bit Fashion-MNIST, small budget.",
        hf_repo="nif-zoo/fmnist-nif64.small",
        mirror="zoo/fmnist-nif64.small",
        files=hub.describe_folder(mirror),
        metrics={"test_bits_per_dim": 1.02},
        metrics_command="nif-zoo bench fmnist-nif64.small",
        card="model_cards/fmnist-nif64.small.md",
    )
    return entry


def no_temp_files_left(manifest: Path) -> bool:
    return sorted(p.name for p in manifest.parent.iterdir()) == ["manifest.json", "model_cards"]


def load_with(tmp_path, monkeypatch, models, **kwargs):
    path = write_manifest(tmp_path, models, **kwargs)
    monkeypatch.setenv(registry.MANIFEST_ENV, str(path))
    return registry.load_manifest()


# The shipped manifest


def test_shipped_manifest_validates_and_holds_the_paper_grid(shipped):
    assert shipped["format_version"] == registry.SUPPORTED_FORMAT_VERSION
    assert GRID <= set(shipped["models"])


def test_shipped_manifest_is_in_canonical_form(shipped):
    text = SHIPPED.read_text()
    assert text == json.dumps(shipped, indent=2, sort_keys=True) + "\n"


def test_shipped_recipes_follow_the_paper(shipped):
    for name in GRID:
        entry = shipped["models"][name]
        config = ModelConfig.from_dict(entry["architecture"])
        assert entry["status"] == "recipe"
        assert entry["revision"] is None and entry["files"] == {}
        assert entry["hf_repo"] == f"nif-zoo/{name}"
        assert (config.steps, config.hidden, config.n_bits) == (16, 256, 3)
        assert (config.scale_fn, config.split) == ("exp_tanh", "passthrough")
        assert config.logit_lambda == 0.05
        latent = name.rsplit("-", 1)[1]
        if latent == "nf":
            assert config.head == "normal"
        else:
            assert (config.head, config.latent_dim) == ("nif", int(latent.removeprefix("nif")))
    fmnist = ModelConfig.from_dict(shipped["models"]["fmnist-nf"]["architecture"])
    cifar = ModelConfig.from_dict(shipped["models"]["cifar10-nf"]["architecture"])
    celeba = ModelConfig.from_dict(shipped["models"]["celeba-nf"]["architecture"])
    assert (fmnist.image_shape, fmnist.levels) == ((28, 28, 1), 2)
    assert (cifar.image_shape, cifar.levels) == ((32, 32, 3), 4)
    assert (celeba.image_shape, celeba.levels) == ((64, 64, 3), 5)


def test_every_card_exists_parses_and_is_up_to_date(shipped):
    for name, entry in shipped["models"].items():
        text = (SHIPPED.parent / entry["card"]).read_text()
        assert text == cards.render_card(name, entry), f"regenerate the card of {name}"
        front, body = cards.parse_card(text)
        if entry["architecture"].get("kind") == "hvae":  # a VAE: checked in test_zoo_models
            assert front["metrics"] == ["log_likelihood"] and "## Limitations" in body
            continue
        nif_paper = "self-normalizing-flows" not in front["tags"]  # else a Self Normalizing Flows model
        assert front["library_name"] == "nif_zoo"
        assert front["license"] == "apache-2.0"
        assert set(cards.TAGS if nif_paper else cards.SNF_TAGS) <= set(front["tags"])
        assert front["datasets"] == [entry["data"]["dataset"]]
        assert front["metrics"] == ["bits_per_dim"]
        for section in ("## Intended use", "## Samples", "## Limitations", "nif-zoo train"):
            assert section in body
        assert (f"nif-zoo bench {name}" in body) == (nif_paper or bool(entry["metrics_command"]))
        if entry["status"] == "recipe":
            assert "No weights exist yet" in body
            assert "model-index" not in front


def test_fmnist_cards_carry_the_bit_depth_caveat(shipped):
    for name, entry in shipped["models"].items():
        front, body = cards.parse_card((SHIPPED.parent / entry["card"]).read_text())
        has_caveat = "most likely 5-bit figures" in body and "0.926 in 40" in body
        nif_paper = not {"self-normalizing-flows", "hyperbolic"} & set(front["tags"])  # 8-bit or VAEs
        assert has_caveat == (entry["data"]["dataset"] == "fashion_mnist" and nif_paper), name


def test_published_card_has_model_index_metrics_and_samples(published):
    front, body = cards.parse_card(cards.render_card("fmnist-nif64.small", published))
    (index,) = front["model-index"]
    assert index["name"] == "fmnist-nif64.small"
    (result,) = index["results"]
    assert result["dataset"]["type"] == "fashion_mnist"
    assert result["metrics"][0]["type"] == "test_bits_per_dim"
    assert result["metrics"][0]["value"] == 1.02
    assert "No weights exist yet" not in body
    assert "![samples](samples.png)" in body
    assert "nif-zoo bench fmnist-nif64.small" in body


# Queries


def test_list_models_filters_by_pattern_and_status(shipped):
    assert registry.list_models() == sorted(shipped["models"])
    assert registry.list_models("fmnist-*") == sorted(n for n in shipped["models"]
                                                      if n.startswith("fmnist-"))
    assert set(registry.list_models("fmnist-*")) >= {n for n in GRID if n.startswith("fmnist")}
    assert registry.list_models("*-nif512") == ["celeba-nif512", "cifar10-nif512", "fmnist-nif512"]
    assert registry.list_models(published_only=True) == [
        n for n, e in sorted(shipped["models"].items()) if e["status"] == "published"
    ]


def test_list_models_published_only(tmp_path, monkeypatch, published):
    load_with(tmp_path, monkeypatch, {"fmnist-nf": recipe(), "fmnist-nif64.small": published})
    assert registry.list_models() == ["fmnist-nf", "fmnist-nif64.small"]
    assert registry.list_models(published_only=True) == ["fmnist-nif64.small"]
    assert registry.list_models("fmnist-nif64*", published_only=True) == ["fmnist-nif64.small"]


def test_info_and_get_entry(shipped):
    info = registry.info("cifar10-nif512")
    assert info["name"] == "cifar10-nif512"
    assert info["architecture"]["latent_dim"] == 512
    entry = registry.get_entry("cifar10-nif512")
    entry["architecture"]["latent_dim"] = 1  # a copy: the manifest is not affected
    assert registry.get_entry("cifar10-nif512")["architecture"]["latent_dim"] == 512


def test_unknown_name_suggests_close_matches(shipped):
    with pytest.raises(registry.UnknownModelError) as excinfo:
        registry.get_entry("fmnist-nif46")
    assert isinstance(excinfo.value, KeyError)
    message = str(excinfo.value)
    assert "'fmnist-nif64'" in message
    assert "nif_zoo.list_models()" in message
    with pytest.raises(KeyError, match="nif_zoo.list_models"):
        registry.info("something-else-entirely")


def test_fetch_files_serves_a_published_mirror(tmp_path, monkeypatch, published):
    load_with(tmp_path, monkeypatch, {"fmnist-nif64.small": published})
    folder = registry.fetch_files("fmnist-nif64.small")
    assert folder == tmp_path / "zoo" / "fmnist-nif64.small"


def test_fetch_files_of_a_recipe_explains_how_to_train(temp_manifest):
    with pytest.raises(hub.HubUnavailableError, match="nif-zoo train"):
        registry.fetch_files("fmnist-nf")


# Validation


def test_newer_format_version_asks_to_upgrade(tmp_path, monkeypatch):
    with pytest.raises(registry.ManifestError, match="upgrade nif_zoo"):
        load_with(tmp_path, monkeypatch, {"fmnist-nf": recipe()}, format_version=2)


def test_duplicate_model_names_are_rejected(tmp_path, monkeypatch):
    path = write_manifest(tmp_path, {"fmnist-nf": recipe()})
    entry = json.dumps(recipe())
    path.write_text(
        f'{{"format_version": 1, "models": {{"fmnist-nf": {entry}, "fmnist-nf": {entry}}}}}'
    )
    monkeypatch.setenv(registry.MANIFEST_ENV, str(path))
    with pytest.raises(registry.ManifestError, match="duplicate key 'fmnist-nf'"):
        registry.list_models()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"revision": "abc123"}, "revision"),
        ({"revision": "G" * 40}, "revision"),
        ({"status": "trained"}, "status"),
        ({"hf_repo": "no-slash"}, "hf_repo"),
        ({"mirror": "../outside"}, "mirror"),
        ({"metrics": {"bpd": "low"}}, "metrics['bpd']"),
        (
            {"architecture": {**recipe()["architecture"], "latent_dim": 5000, "head": "nif"}},
            "architecture",
        ),
        ({"architecture": {**recipe()["architecture"], "levels": 3}}, "architecture"),
        ({"data": {**recipe()["data"], "dataset": "mnist"}}, "data.dataset"),
        ({"data": {**recipe()["data"], "n_bits": 5}}, "data.n_bits"),
        ({"files": {"w.msgpack": {"size": 1, "sha256": "0" * 63}}}, "files['w.msgpack'].sha256"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_entries_name_the_entry_and_field(tmp_path, monkeypatch, change, field):
    entry = {**recipe(), **change}
    with pytest.raises(registry.ManifestError) as excinfo:
        load_with(tmp_path, monkeypatch, {"fmnist-nf": entry})
    assert "'fmnist-nf'" in str(excinfo.value)
    assert f"field {field!r}" in str(excinfo.value)


def test_valid_hex_revision_on_a_published_entry_is_accepted(tmp_path, monkeypatch, published):
    published["revision"] = "0123456789abcdef0123456789abcdef01234567"
    manifest = load_with(tmp_path, monkeypatch, {"fmnist-nif64.small": published})
    assert manifest["models"]["fmnist-nif64.small"]["revision"] == published["revision"]


def test_published_entries_need_files_and_a_source(tmp_path, monkeypatch, published):
    with pytest.raises(registry.ManifestError, match="'files'"):
        load_with(tmp_path, monkeypatch, {"m": {**published, "files": {}}})
    with pytest.raises(registry.ManifestError, match="'revision'"):
        load_with(tmp_path, monkeypatch, {"m": {**published, "mirror": None}})


def test_missing_card_is_rejected(temp_manifest):
    (temp_manifest.parent / "model_cards" / "fmnist-nf.md").unlink()
    with pytest.raises(registry.ManifestError, match="'card'.*does not exist"):
        registry.list_models()


def test_invalid_json_is_a_manifest_error(temp_manifest):
    temp_manifest.write_text("{not json")
    with pytest.raises(registry.ManifestError, match="not valid JSON"):
        registry.list_models()


# Writing


def test_write_entry_adds_an_entry_in_canonical_form(tmp_path, temp_manifest, published):
    card = tmp_path / published["card"]
    cards.write_card("fmnist-nif64.small", published, root=tmp_path)
    registry.write_entry("fmnist-nif64.small", published)

    assert registry.get_entry("fmnist-nif64.small") == published
    assert registry.list_models() == ["fmnist-nf", "fmnist-nif64.small"]
    manifest = json.loads(temp_manifest.read_text())
    assert temp_manifest.read_text() == json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    assert cards.parse_card(card.read_text())[0]["model-index"][0]["name"] == "fmnist-nif64.small"


def test_write_entry_validates_before_writing(temp_manifest):
    before = temp_manifest.read_bytes()
    with pytest.raises(registry.ManifestError):
        registry.write_entry("fmnist-nf", {**recipe(), "revision": "not-hex"})
    assert temp_manifest.read_bytes() == before


def test_write_entry_is_atomic_when_serialisation_fails(temp_manifest, monkeypatch):
    before = temp_manifest.read_bytes()
    monkeypatch.setattr(registry, "validate_manifest", lambda *args, **kwargs: None)
    unserialisable = {**recipe(), "metrics": {"bits_per_dim": object()}}
    with pytest.raises(TypeError):
        registry.write_entry("fmnist-nf", unserialisable)
    assert temp_manifest.read_bytes() == before
    assert no_temp_files_left(temp_manifest)


def test_write_entry_is_atomic_when_replace_fails(temp_manifest, monkeypatch):
    before = temp_manifest.read_bytes()

    def fail_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(registry.os, "replace", fail_replace)
    with pytest.raises(OSError, match="disk full"):
        registry.write_entry("fmnist-nf", {**recipe(), "description": "changed"})
    assert temp_manifest.read_bytes() == before
    assert no_temp_files_left(temp_manifest)


def test_save_entry_with_card_writes_both(tmp_path, temp_manifest, published):
    card = cards.save_entry_with_card("fmnist-nif64.small", published)
    assert card == tmp_path / "model_cards" / "fmnist-nif64.small.md"
    assert card.read_text() == cards.render_card("fmnist-nif64.small", published)
    assert registry.get_entry("fmnist-nif64.small") == published


def test_save_entry_with_card_removes_the_card_when_the_entry_is_invalid(
    tmp_path, temp_manifest, published
):
    with pytest.raises(registry.ManifestError):
        cards.save_entry_with_card("fmnist-nif64.small", {**published, "revision": "nope"})
    assert not (tmp_path / published["card"]).exists()
    assert registry.list_models() == ["fmnist-nf"]
