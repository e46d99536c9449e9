import hashlib
import os
import socket
import time
from pathlib import Path

import pytest
from huggingface_hub import CommitInfo, HfApi, scan_cache_dir, try_to_load_from_cache
from huggingface_hub import constants as hf_constants

from nif_zoo import hub

REPO_ID = "nif-zoo/test-model.small"
# Made-up commit id: only ever used inside tests.
REVISION = hashlib.sha1(b"nif_zoo test snapshot").hexdigest()


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail (and record) any attempt to open a connection."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network connection attempted: {args}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield
    assert attempts == []


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "model"
    (root / "params").mkdir(parents=True)
    (root / "samples").mkdir()
    (root / "config.json").write_text('{"levels": 2}\n')
    (root / "params" / "weights.msgpack").write_bytes(os.urandom(3000))
    (root / "samples" / "grid.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    return root


@pytest.fixture
def spec(folder) -> dict:
    return hub.describe_folder(folder)


def read_all(root: Path, spec: dict) -> dict:
    return {rel: (root / rel).read_bytes() for rel in spec}


def flip_first_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.unlink()  # replace rather than write through a cache symlink
    path.write_bytes(bytes(data))


def test_describe_folder_lists_every_file_sorted_posix(folder):
    spec = hub.describe_folder(folder)
    assert list(spec) == ["config.json", "params/weights.msgpack", "samples/grid.png"]
    weights = folder / "params" / "weights.msgpack"
    assert spec["params/weights.msgpack"] == {
        "size": 3000,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    assert hub.file_record(weights) == spec["params/weights.msgpack"]


def test_fetch_by_revision_from_seeded_cache_returns_identical_bytes(folder, spec, tmp_path):
    cache = tmp_path / "hf-cache"
    snapshot = hub.seed_cache(folder, REPO_ID, REVISION, cache_dir=cache)

    fetched = hub.fetch(REPO_ID, REVISION, spec, cache_dir=cache)

    assert fetched == snapshot
    assert fetched.parts[-2:] == ("snapshots", REVISION)
    assert read_all(fetched, spec) == read_all(folder, spec)


def test_seeded_cache_has_the_layout_huggingface_hub_expects(folder, spec, tmp_path):
    cache = tmp_path / "hf-cache"
    hub.seed_cache(folder, REPO_ID, REVISION, cache_dir=cache)

    report = scan_cache_dir(cache)
    assert not report.warnings
    (repo,) = report.repos
    assert repo.repo_id == REPO_ID
    (revision,) = repo.revisions
    assert revision.commit_hash == REVISION
    assert revision.nb_files == len(spec)
    cached = try_to_load_from_cache(REPO_ID, "params/weights.msgpack", cache, REVISION)
    assert Path(cached).read_bytes() == (folder / "params" / "weights.msgpack").read_bytes()


def test_seed_cache_with_spec_seeds_only_those_files(folder, spec, tmp_path):
    cache = tmp_path / "hf-cache"
    partial = {"config.json": spec["config.json"]}
    snapshot = hub.seed_cache(folder, REPO_ID, REVISION, cache_dir=cache, files_spec=partial)
    assert sorted(p.name for p in snapshot.rglob("*") if p.is_file()) == ["config.json"]


def test_seed_cache_rejects_a_branch_name(folder, tmp_path):
    with pytest.raises(ValueError, match="40-hex"):
        hub.seed_cache(folder, REPO_ID, "main", cache_dir=tmp_path / "hf-cache")


def test_fetch_falls_back_to_mirror_when_cache_lacks_repo(folder, spec, tmp_path):
    fetched = hub.fetch(REPO_ID, REVISION, spec, mirror=folder, cache_dir=tmp_path / "empty")
    assert fetched == folder


def test_fetch_falls_back_to_mirror_when_cache_lacks_one_file(folder, spec, tmp_path):
    cache = tmp_path / "hf-cache"
    partial = {"config.json": spec["config.json"]}
    hub.seed_cache(folder, REPO_ID, REVISION, cache_dir=cache, files_spec=partial)

    assert hub.fetch(REPO_ID, REVISION, spec, mirror=folder, cache_dir=cache) == folder
    with pytest.raises(hub.HubUnavailableError) as excinfo:
        hub.fetch(REPO_ID, REVISION, spec, cache_dir=cache)
    message = str(excinfo.value)
    assert "2 file(s)" in message
    assert "params/weights.msgpack" in message and "samples/grid.png" in message
    assert "config.json" not in message


def test_no_cache_and_no_mirror_raises_unavailable_with_a_fix(spec, tmp_path):
    with pytest.raises(hub.HubUnavailableError) as excinfo:
        hub.fetch(REPO_ID, REVISION, spec, cache_dir=tmp_path / "empty")
    message = str(excinfo.value)
    assert f"{REPO_ID}@{REVISION}" in message
    assert "nif-zoo download test-model.small" in message
    assert "params/weights.msgpack" in message


def test_flipped_byte_in_mirror_raises_checksum_error_naming_file(folder, spec, tmp_path):
    flip_first_byte(folder / "params" / "weights.msgpack")
    with pytest.raises(hub.ChecksumError, match="params/weights.msgpack"):
        hub.fetch(REPO_ID, None, spec, mirror=folder)


def test_flipped_byte_in_cache_raises_checksum_error(folder, spec, tmp_path):
    cache = tmp_path / "hf-cache"
    hub.seed_cache(folder, REPO_ID, REVISION, cache_dir=cache)
    blob = cache / "models--nif-zoo--test-model.small" / "blobs" / spec["config.json"]["sha256"]
    flip_first_byte(blob)
    with pytest.raises(hub.ChecksumError, match="config.json"):
        hub.fetch(REPO_ID, REVISION, spec, mirror=folder, cache_dir=cache)


def test_truncated_file_raises_partial_download_error(folder, spec):
    weights = folder / "params" / "weights.msgpack"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(hub.PartialDownloadError) as excinfo:
        hub.verify_folder(folder, spec)
    message = str(excinfo.value)
    assert "params/weights.msgpack" in message
    assert "1000 bytes" in message and "3000 bytes" in message
    assert "Delete" in message


def test_missing_file_raises_partial_download_error(folder, spec):
    (folder / "samples" / "grid.png").unlink()
    with pytest.raises(hub.PartialDownloadError, match="samples/grid.png"):
        hub.verify_folder(folder, spec)


def test_hub_errors_share_a_base_class():
    for error in (hub.HubUnavailableError, hub.PartialDownloadError, hub.ChecksumError):
        assert issubclass(error, hub.HubError)
    assert issubclass(hub.HubError, RuntimeError)


def test_revision_none_uses_the_mirror(folder, spec):
    assert hub.fetch(REPO_ID, None, spec, mirror=folder) == folder


def test_revision_none_without_mirror_is_unavailable(spec):
    with pytest.raises(hub.HubUnavailableError, match="not been pushed"):
        hub.fetch(REPO_ID, None, spec)


def test_missing_mirror_folder_is_unavailable(spec, tmp_path):
    with pytest.raises(hub.HubUnavailableError, match="does not exist"):
        hub.fetch(REPO_ID, None, spec, mirror=tmp_path / "nowhere")


def test_push_folder_offline_fails_fast(folder):
    start = time.monotonic()
    with pytest.raises(hub.HubUnavailableError, match="HF_HUB_OFFLINE"):
        hub.push_folder(folder, REPO_ID, token="hf_not_a_real_token")
    assert time.monotonic() - start < 2.0


def test_offline_is_read_from_the_environment_at_call_time(monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not hub.hub_offline()


def test_cache_only_lookup_when_offline_set_after_import(folder, spec, tmp_path, monkeypatch):
    # huggingface_hub froze HF_HUB_OFFLINE=0 at import, the user set it later: still no network.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(hub.HubUnavailableError):
        hub.fetch(REPO_ID, REVISION, spec, cache_dir=tmp_path / "empty")
    assert hub.fetch(REPO_ID, REVISION, spec, mirror=folder, cache_dir=tmp_path / "e") == folder


def test_push_folder_returns_the_commit_id(folder, monkeypatch):
    # No Hub here: stand in for the two HfApi calls and check what push_folder does with them.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    calls = []
    commit_id = "0123456789abcdef0123456789abcdef01234567"

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return CommitInfo(
            commit_url=f"https://huggingface.co/{REPO_ID}/commit/{commit_id}",
            commit_message=kwargs["commit_message"],
            commit_description="",
            oid=commit_id,
        )

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)

    assert hub.push_folder(folder, REPO_ID, private=True, commit_message="add weights") == commit_id
    assert calls[0] == (
        "create_repo",
        REPO_ID,
        {"private": True, "exist_ok": True, "repo_type": "model"},
    )
    assert calls[1][2]["folder_path"] == str(folder)
    assert calls[1][2]["commit_message"] == "add weights"


def test_push_folder_unreachable_hub_is_unavailable(folder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)

    def unreachable(self, repo_id, **kwargs):
        raise ConnectionError("connection refused")

    monkeypatch.setattr(HfApi, "create_repo", unreachable)
    with pytest.raises(hub.HubUnavailableError, match="unreachable"):
        hub.push_folder(folder, REPO_ID)
