"""The zoo's loading path: save, seed a cache, load by name / hf-hub reference / mirror / folder.

Everything runs on one tiny NIF model (8x8x1, 2 levels x 2 steps, 8 hidden channels), created
once per module through `create` from a temporary manifest; no test opens a network connection.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from huggingface_hub import constants as hf_constants

from nif_zoo import hub, pretrained, registry
from nif_zoo.config import FORMAT_VERSION, ModelConfig

NAME = "tiny-nif"
REPO_ID = "nif-zoo/tiny-nif"
# Made-up commit id: only ever used inside tests.
REVISION = hashlib.sha1(b"nif_zoo test_pretrained snapshot").hexdigest()
TINY = ModelConfig(image_shape=(8, 8, 1), levels=2, steps=2, hidden=8, head="nif", latent_dim=4)
CARD = f"---\nlibrary_name: nif_zoo\n---\n# {NAME}\n\nA tiny test model.\n"
# A (2, 3) batch of images: any leading batch shape is accepted.
IMAGES = np.random.default_rng(0).integers(0, 256, (2, 3, *TINY.image_shape), dtype=np.uint8)
PIXELS = {v * 255 // (2**TINY.n_bits - 1) for v in range(2**TINY.n_bits)}


def entry(**changes) -> dict:
    """A manifest entry for the tiny architecture (a recipe unless ``changes`` say otherwise)."""
    base = {
        "status": "recipe",
        "description": "A tiny NIF for tests.",
        "architecture": TINY.to_dict(),
        "data": {
            "dataset": "fashion_mnist",
            "image_shape": list(TINY.image_shape),
            "n_bits": TINY.n_bits,
            "preprocessing": "quantise to 3 bits, uniform dequantisation",
            "split": "test only",
        },
        "hf_repo": REPO_ID,
        "revision": None,
        "mirror": None,
        "files": {},
        "metrics": {},
        "metrics_command": None,
        "card": f"model_cards/{NAME}.md",
        "train_config": "nif_zoo/configs/tiny.py",
    }
    return {**base, **changes}


def write_manifest(root: Path, models: dict) -> Path:
    for model_entry in models.values():
        card = root / model_entry["card"]
        card.parent.mkdir(parents=True, exist_ok=True)
        card.write_text(CARD)
    path = root / "manifest.json"
    registry.write_manifest({"format_version": 1, "models": models}, path)
    return path


def publish(root: Path, folder: Path, monkeypatch, revision=REVISION, mirror=None) -> dict:
    """Register ``folder``'s files as the published model NAME in a manifest under ``root``."""
    published = entry(status="published", files=hub.describe_folder(folder), revision=revision,
                      mirror=None if mirror is None else Path(mirror).relative_to(root).as_posix())
    monkeypatch.setenv(registry.MANIFEST_ENV, str(write_manifest(root, {NAME: published})))
    return published


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.unlink()  # replace rather than write through a cache symlink
    path.write_bytes(bytes(data))


def truncate(path: Path) -> int:
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[: len(data) // 2])
    return len(data)


def weight_file(folder: Path) -> str:
    """The largest file of array data in the Orbax checkpoint, as a folder-relative POSIX path."""
    files = [p for p in (folder / pretrained.CHECKPOINT_DIR).rglob("*")
             if p.is_file() and p.parent.name == "d"]  # OCDBT data files, not metadata
    return max(files, key=lambda p: p.stat().st_size).relative_to(folder).as_posix()


def rewrite_config(folder: Path, change) -> None:
    """Edit config.json and re-sign files.json, so that only the edit itself is wrong."""
    config_path = folder / pretrained.CONFIG_FILE
    meta = json.loads(config_path.read_text())
    change(meta)
    config_path.write_text(json.dumps(meta))
    (folder / pretrained.CHECKSUM_FILE).unlink()
    records = hub.describe_folder(folder)
    (folder / pretrained.CHECKSUM_FILE).write_text(json.dumps(records))


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_same_model(loaded: pretrained.Pretrained, model, reference) -> None:
    assert loaded.config == model.config
    assert jax.tree.structure(loaded.params) == jax.tree.structure(model.params)
    for got, want in zip(leaves(loaded.params), leaves(model.params), strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.asarray(loaded.log_prob(IMAGES)), reference)


# Fixtures


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Fail (and record) any connection attempt; point the default HF cache into tmp_path."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network connection attempted: {args}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield attempts
    assert attempts == []


@pytest.fixture(scope="module")
def created(tmp_path_factory) -> pretrained.Pretrained:
    """`create` on a temporary manifest whose entry has the tiny architecture."""
    path = write_manifest(tmp_path_factory.mktemp("create"), {NAME: entry()})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(registry.MANIFEST_ENV, str(path))
        # The same code path with cheaper random bits: threefry's init compiles ~4x slower.
        with jax.default_prng_impl("rbg"):
            return pretrained.create(NAME)


@pytest.fixture(scope="module")
def model(created) -> pretrained.Pretrained:
    """The created model with its parameters committed to the device, as `load` places them.

    Only the placement changes (not a value), so the loaded models reuse this one's compiled
    functions instead of compiling them again.
    """
    params = jax.device_put(created.params, jax.local_devices()[0])
    return dataclasses.replace(created, params=params)


@pytest.fixture(scope="module")
def reference(model) -> np.ndarray:
    return np.asarray(model.log_prob(IMAGES))


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory) -> Path:
    return model.save_pretrained(tmp_path_factory.mktemp("saved") / NAME, card=CARD)


@pytest.fixture
def folder(saved, tmp_path) -> Path:
    """A fresh copy of the saved model folder, safe to tamper with."""
    return Path(shutil.copytree(saved, tmp_path / "zoo" / NAME))


@pytest.fixture
def cache(tmp_path) -> Path:
    return Path(hf_constants.HF_HUB_CACHE)


# The Pretrained API on the tiny model


def test_create_gives_the_architecture_of_the_registry_entry(created):
    assert created.config == TINY
    assert created.name == NAME
    assert created.data == entry()["data"]
    expected = pretrained.abstract_params(TINY)
    assert jax.tree.structure(created.params) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(created.params), jax.tree.leaves(expected), strict=True):
        assert (got.shape, got.dtype) == (want.shape, want.dtype)
    assert created.params["head"]["a"].shape == (TINY.dim, TINY.latent_dim)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(created.params))


def test_any_leading_batch_shape(model, reference):
    assert reference.shape == (2, 3)
    assert np.all(np.isfinite(reference))
    flat = model.log_prob(IMAGES.reshape(6, *TINY.image_shape))
    np.testing.assert_array_equal(np.asarray(flat).reshape(2, 3), reference)
    u = model.encode(IMAGES)
    assert u.shape == (2, 3, TINY.latent_dim)
    assert model.project(IMAGES).shape == IMAGES.shape


def test_uint8_images_are_dequantised_at_the_cell_midpoints(model, reference):
    values = IMAGES.astype(np.int64) >> (8 - TINY.n_bits)
    midpoints = ((values + 0.5) / 2**TINY.n_bits - 0.5).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model.log_prob(midpoints)), reference, rtol=1e-6)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 28, 28, 1), (8, 8), (64,)])
def test_wrong_image_shape_names_the_expected_shape(model, shape):
    with pytest.raises(ValueError) as excinfo:
        model.log_prob(np.zeros(shape, np.uint8))
    assert "(..., 8, 8, 1)" in str(excinfo.value)
    assert str(shape) in str(excinfo.value)
    with pytest.raises(ValueError, match=r"\(\.\.\., 8, 8, 1\)"):
        model.encode(np.zeros(shape, np.float32))


def test_wrong_dtype_and_out_of_range_pixels_are_rejected(model):
    with pytest.raises(TypeError, match="uint8"):
        model.log_prob(np.zeros((2, *TINY.image_shape), bool))
    with pytest.raises(ValueError, match=r"0\.\.255"):
        model.log_prob(np.full((2, *TINY.image_shape), 300, np.int32))
    with pytest.raises(TypeError, match="uint8"):
        model.bits_per_dim(np.zeros((2, *TINY.image_shape), np.float32))


def test_sample_returns_uint8_images_of_the_model_bit_depth(model):
    images = model.sample(jax.random.key(1), 6, t=0.7)
    assert isinstance(images, np.ndarray)
    assert images.dtype == np.uint8
    assert images.shape == (6, *TINY.image_shape)
    assert set(np.unique(images)) <= PIXELS


def test_samples_on_the_manifold_are_fixed_points_of_project(model):
    x = model.sample_float(jax.random.key(2), 6, s=0.0)
    assert x.shape == (6, *TINY.image_shape)
    assert np.all(np.abs(np.asarray(x)) <= 0.5)
    x = np.asarray(x)  # numpy, like the images of the other tests: no new compilation
    np.testing.assert_allclose(np.asarray(model.project(x)), x, atol=1e-4)


# Saving


def test_save_pretrained_writes_the_hub_layout(saved):
    names = {p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file()}
    assert {pretrained.CONFIG_FILE, pretrained.CHECKSUM_FILE, pretrained.CARD_FILE} <= names
    assert any(name.startswith(f"{pretrained.CHECKPOINT_DIR}/") for name in names)
    meta = json.loads((saved / pretrained.CONFIG_FILE).read_text())
    assert meta["format_version"] == FORMAT_VERSION
    assert ModelConfig.from_dict(meta["model"]) == TINY
    checksums = json.loads((saved / pretrained.CHECKSUM_FILE).read_text())
    assert set(checksums) == names - {pretrained.CHECKSUM_FILE}
    assert (saved / pretrained.CARD_FILE).read_text() == CARD
    assert sorted(p.name for p in saved.parent.iterdir()) == [NAME]  # no staging left


def test_save_pretrained_replaces_an_existing_folder(model, folder):
    (folder / "stale.txt").write_text("from an older save")
    assert model.save_pretrained(folder) == folder
    assert not (folder / "stale.txt").exists()
    assert not (folder / pretrained.CARD_FILE).exists()  # this save had no card
    assert sorted(p.name for p in folder.parent.iterdir()) == [NAME]
    pretrained._read_folder(folder, NAME)  # verifies files.json


def test_save_pretrained_failing_midway_leaves_the_folder_intact(model, folder, monkeypatch):
    before = hub.describe_folder(folder)

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(folder, card="# new card\n")
    assert hub.describe_folder(folder) == before
    assert sorted(p.name for p in folder.parent.iterdir()) == [NAME]


def test_save_pretrained_failing_at_the_swap_leaves_the_folder_intact(model, folder, monkeypatch):
    before = hub.describe_folder(folder)
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append((src, dst))
        if Path(dst) == folder and len(calls) == 2:  # moving the new folder into place
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr(pretrained.os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        model.save_pretrained(folder, card="# new card\n")
    assert Path(calls[0][0]) == folder and Path(calls[1][1]) == folder
    assert hub.describe_folder(folder) == before
    assert sorted(p.name for p in folder.parent.iterdir()) == [NAME]


def test_save_pretrained_into_a_new_folder_failing_leaves_nothing(model, tmp_path, monkeypatch):
    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", broken_save)
    with pytest.raises(OSError):
        model.save_pretrained(tmp_path / "new" / NAME)
    assert list((tmp_path / "new").iterdir()) == []


# Loading: the four ways in, all identical


def test_load_from_a_directory(folder, model, reference):
    loaded = pretrained.load(str(folder))
    assert_same_model(loaded, model, reference)
    assert loaded.name == NAME
    assert loaded.card == CARD
    assert loaded.data == model.data


def test_load_from_a_relative_directory(folder, model, reference, monkeypatch):
    monkeypatch.chdir(folder.parent)
    loaded = pretrained.load(folder.name)
    assert_same_model(loaded, model, reference)
    assert loaded.name == NAME


def test_load_by_name_from_a_seeded_hf_cache(folder, model, reference, tmp_path, monkeypatch,
                                             cache):
    publish(tmp_path, folder, monkeypatch)
    hub.seed_cache(folder, REPO_ID, REVISION, cache_dir=cache)
    shutil.rmtree(folder)  # nothing but the cache can serve it now

    loaded = pretrained.load(NAME)
    assert_same_model(loaded, model, reference)
    assert loaded.name == NAME
    assert loaded.card == CARD


def test_load_by_name_when_huggingface_hub_was_imported_online(folder, model, reference,
                                                               tmp_path, monkeypatch, cache):
    # huggingface_hub read HF_HUB_OFFLINE=0 at import; the user set it afterwards.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    publish(tmp_path, folder, monkeypatch)
    hub.seed_cache(folder, REPO_ID, REVISION, cache_dir=cache)
    assert_same_model(pretrained.load(NAME), model, reference)


def test_load_by_hf_hub_reference_from_a_seeded_cache(saved, model, reference, cache):
    hub.seed_cache(saved, REPO_ID, REVISION, cache_dir=cache)
    loaded = pretrained.load(f"hf-hub:{REPO_ID}@{REVISION}")
    assert_same_model(loaded, model, reference)
    assert loaded.name == REPO_ID
    assert loaded.card == CARD


def test_load_by_name_from_the_mirror(folder, model, reference, tmp_path, monkeypatch):
    publish(tmp_path, folder, monkeypatch, revision=None, mirror=folder)
    assert_same_model(pretrained.load(NAME), model, reference)


def test_load_by_name_falls_back_to_the_mirror_when_not_cached(folder, model, reference,
                                                              tmp_path, monkeypatch, cache):
    publish(tmp_path, folder, monkeypatch, mirror=folder)
    assert not cache.exists()
    assert_same_model(pretrained.load(NAME), model, reference)


# Loading: what goes wrong, and what it says


def test_tampered_weight_file_in_a_folder_is_caught_by_name(folder):
    relpath = weight_file(folder)
    flip_one_byte(folder / relpath)
    with pytest.raises(hub.ChecksumError, match=relpath):
        pretrained.load(str(folder))


def test_tampered_weight_file_in_the_cache_is_caught_by_name(folder, tmp_path, monkeypatch,
                                                             cache):
    publish(tmp_path, folder, monkeypatch, mirror=folder)
    snapshot = hub.seed_cache(folder, REPO_ID, REVISION, cache_dir=cache)
    relpath = weight_file(folder)
    flip_one_byte((snapshot / relpath).resolve())  # the blob the snapshot links to
    with pytest.raises(hub.ChecksumError, match=relpath):
        pretrained.load(NAME)


def test_tampered_weight_file_behind_an_hf_hub_reference_is_caught(saved, cache):
    snapshot = hub.seed_cache(saved, REPO_ID, REVISION, cache_dir=cache)
    relpath = weight_file(saved)
    flip_one_byte((snapshot / relpath).resolve())
    with pytest.raises(hub.ChecksumError, match=relpath):
        pretrained.load(f"hf-hub:{REPO_ID}@{REVISION}")


def test_truncated_file_in_a_folder_is_a_partial_download(folder):
    relpath = weight_file(folder)
    size = truncate(folder / relpath)
    with pytest.raises(hub.PartialDownloadError) as excinfo:
        pretrained.load(str(folder))
    message = str(excinfo.value)
    assert relpath in message
    assert f"{size // 2} bytes" in message and f"{size} bytes" in message


def test_truncated_file_in_the_cache_is_a_partial_download(folder, tmp_path, monkeypatch, cache):
    publish(tmp_path, folder, monkeypatch)
    snapshot = hub.seed_cache(folder, REPO_ID, REVISION, cache_dir=cache)
    relpath = weight_file(folder)
    truncate((snapshot / relpath).resolve())
    with pytest.raises(hub.PartialDownloadError, match=relpath):
        pretrained.load(NAME)


def test_file_missing_from_the_cache_without_mirror_is_unavailable(folder, tmp_path, monkeypatch,
                                                                   cache):
    published = publish(tmp_path, folder, monkeypatch)
    relpath = weight_file(folder)
    partial = {k: v for k, v in published["files"].items() if k != relpath}
    hub.seed_cache(folder, REPO_ID, REVISION, cache_dir=cache, files_spec=partial)
    with pytest.raises(hub.HubUnavailableError) as excinfo:
        pretrained.load(NAME)
    assert relpath in str(excinfo.value)
    assert "1 file(s)" in str(excinfo.value)


def test_wrong_format_version_is_a_version_error(folder):
    rewrite_config(folder, lambda meta: meta.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(pretrained.IncompatibleCheckpointError) as excinfo:
        pretrained.load(str(folder))
    message = str(excinfo.value)
    assert f"format {FORMAT_VERSION + 1}" in message
    assert f"reads format {FORMAT_VERSION}" in message


def test_edited_config_without_new_checksums_is_caught(folder):
    meta = json.loads((folder / pretrained.CONFIG_FILE).read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (folder / pretrained.CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(hub.HubError, match=pretrained.CONFIG_FILE):
        pretrained.load(str(folder))


def test_config_from_a_newer_nif_zoo_asks_to_upgrade(folder):
    rewrite_config(folder, lambda meta: meta["model"].update(fancy_new_option=True))
    with pytest.raises(pretrained.IncompatibleCheckpointError, match="upgrade nif_zoo"):
        pretrained.load(str(folder))


# Orbax leaves the reads of the other arrays pending when one fails: harmless noise.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("change", [dict(hidden=16), dict(latent_dim=8), dict(levels=1)])
def test_params_that_do_not_match_the_architecture_are_incompatible(folder, change):
    rewrite_config(folder, lambda meta: meta["model"].update(change))
    with pytest.raises(pretrained.IncompatibleCheckpointError, match="does not match"):
        pretrained.load(str(folder))


def test_folder_without_config_is_not_a_model_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=pretrained.CONFIG_FILE):
        pretrained.load(str(tmp_path / "empty"))


def test_unknown_name_suggests_close_matches(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.MANIFEST_ENV, str(write_manifest(tmp_path, {NAME: entry()})))
    with pytest.raises(registry.UnknownModelError) as excinfo:
        pretrained.load("tiny-nfi")
    assert f"Did you mean {NAME!r}" in str(excinfo.value)
    assert "list_models()" in str(excinfo.value)
    with pytest.raises(registry.UnknownModelError):
        pretrained.create("tiny-nfi")


def test_shipped_names_are_suggested_too(monkeypatch):
    monkeypatch.delenv(registry.MANIFEST_ENV, raising=False)
    with pytest.raises(registry.UnknownModelError, match="'fmnist-nif64'"):
        pretrained.load("fmnist-nif46")


def test_a_recipe_has_no_weights_and_says_how_to_train_it(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.MANIFEST_ENV, str(write_manifest(tmp_path, {NAME: entry()})))
    with pytest.raises(hub.HubUnavailableError) as excinfo:
        pretrained.load(NAME)
    message = str(excinfo.value)
    assert "no weights exist" in message
    assert f"nif-zoo train {entry()['train_config']}" in message


def test_shipped_recipes_cannot_be_loaded(monkeypatch):
    monkeypatch.delenv(registry.MANIFEST_ENV, raising=False)
    with pytest.raises(hub.HubUnavailableError, match="nif-zoo train"):
        pretrained.load("fmnist-nf")


@pytest.mark.parametrize("ref", [f"hf-hub:{REPO_ID}", f"hf-hub:{REPO_ID}@"])
def test_hf_hub_reference_needs_a_revision(ref):
    with pytest.raises(ValueError, match="no revision"):
        pretrained.load(ref)


def test_offline_load_of_an_uncached_model_fails_without_connecting(tmp_path, monkeypatch,
                                                                    folder, no_network):
    # The Hub is the only source (no mirror), the cache is empty, and huggingface_hub itself
    # thinks it is online: `load` must still stay off the network.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    publish(tmp_path, folder, monkeypatch)
    with pytest.raises(hub.HubUnavailableError, match="not in the Hugging Face cache"):
        pretrained.load(NAME)
    with pytest.raises(hub.HubUnavailableError, match="not in the Hugging Face cache"):
        pretrained.load(f"hf-hub:{REPO_ID}@{REVISION}")
    assert no_network == []
