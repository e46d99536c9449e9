"""Hugging Face Hub I/O for zoo checkpoints: pinned downloads, mirrors, verification, upload.

No model code lives here: files go in and out as bytes, checked against ``{size, sha256}``.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import huggingface_hub
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled
from huggingface_hub.file_download import REGEX_COMMIT_HASH, repo_folder_name

logger = logging.getLogger(__name__)

FileSpec = Mapping[str, Mapping[str, object]]

_CHUNK = 1 << 20
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
_DEFAULT_COMMIT_MESSAGE = "Upload nif_zoo checkpoint"


class HubError(RuntimeError):
    """Base class for checkpoint download, verification and upload failures."""


class HubUnavailableError(HubError):
    """The files are neither reachable on the Hub nor available locally."""


class PartialDownloadError(HubError):
    """A file is missing or has the wrong size: an interrupted or partial download."""


class ChecksumError(HubError):
    """A file has the right size but the wrong sha256: it is corrupt and must not be used."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: str | os.PathLike[str]) -> dict[str, int | str]:
    """Return the manifest record ``{"size", "sha256"}`` of one file."""
    return {"size": os.path.getsize(path), "sha256": sha256_file(path)}


def describe_folder(folder: str | os.PathLike[str]) -> dict[str, dict[str, int | str]]:
    """Return records for every file under ``folder``, keyed by sorted relative POSIX path."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): file_record(p) for p in files}


def verify_folder(folder: str | os.PathLike[str], files_spec: FileSpec) -> None:
    """Check that ``folder`` holds every file of ``files_spec`` with the right size and sha256.

    Raises `PartialDownloadError` for a missing or wrongly sized file and `ChecksumError` for a
    digest mismatch. Files in the folder that the spec does not list are ignored.
    """
    root = Path(folder)
    for relpath, record in sorted(files_spec.items()):
        path = root / relpath
        expected_size = int(record["size"])
        if not path.is_file():
            raise PartialDownloadError(
                f"{relpath} is missing from {root} (expected {expected_size} bytes); "
                "download it again."
            )
        size = path.stat().st_size
        if size != expected_size:
            raise PartialDownloadError(
                f"{relpath} in {root} is {size} bytes but should be {expected_size} bytes: "
                f"the download is incomplete. Delete {path} and download it again."
            )
        digest = sha256_file(path)
        if digest != record["sha256"]:
            raise ChecksumError(
                f"{relpath} in {root} has sha256 {digest} but the manifest says "
                f"{record['sha256']}: the file is corrupt or was altered; do not use it. "
                f"Delete {path} and download it again."
            )


def fetch(
    repo_id: str,
    revision: str | None,
    files_spec: FileSpec,
    mirror: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Return a local folder holding the verified files of ``files_spec``.

    With a ``revision``, each file is taken from the Hugging Face cache or downloaded at that
    pinned commit (``HF_HUB_OFFLINE=1`` means cache only). If the Hub cannot be reached and the
    cache lacks a file, the ``mirror`` folder is used instead. Without a revision (never pushed),
    only the mirror can serve the files.
    """
    if not files_spec:
        raise HubError(f"{repo_id}: the manifest lists no files to fetch")
    if revision is None:
        if mirror is None:
            raise HubUnavailableError(
                f"{repo_id} has not been pushed to the Hub yet (no revision) and has no mirror "
                "folder: there is nowhere to get its files from."
            )
        return _verified_mirror(mirror, files_spec)

    try:
        snapshot = _download_snapshot(repo_id, revision, files_spec, cache_dir)
    except HubUnavailableError:
        if mirror is None:
            raise
        logger.info("%s@%s is not reachable or cached; using mirror %s", repo_id, revision, mirror)
        return _verified_mirror(mirror, files_spec)
    verify_folder(snapshot, files_spec)
    return snapshot


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = _DEFAULT_COMMIT_MESSAGE,
) -> str:
    """Create ``repo_id`` if needed, upload ``folder`` as one commit and return its 40-hex id."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    if hub_offline():
        raise HubUnavailableError(
            f"cannot push {folder} to {repo_id}: HF_HUB_OFFLINE is set. Unset it on a machine "
            "that can reach the Hugging Face Hub and push again."
        )
    api = huggingface_hub.HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            commit_message=commit_message,
            repo_type="model",
        )
    except _connection_errors() as err:
        raise HubUnavailableError(
            f"cannot push {folder} to {repo_id}: the Hugging Face Hub is unreachable ({err})."
        ) from err
    return commit.oid


def seed_cache(
    folder: str | os.PathLike[str],
    repo_id: str,
    revision: str,
    cache_dir: str | os.PathLike[str] | None = None,
    files_spec: FileSpec | None = None,
) -> Path:
    """Lay the files of ``folder`` into the Hugging Face cache as ``repo_id`` at ``revision``.

    Afterwards ``hf_hub_download(repo_id, f, revision=revision, cache_dir=cache_dir)`` finds
    them without the network. With ``files_spec`` the folder is verified first and only those
    files are seeded. Returns the snapshot folder.
    """
    if not isinstance(revision, str) or not REGEX_COMMIT_HASH.fullmatch(revision):
        raise ValueError(f"revision must be a 40-hex commit id, got {revision!r}")
    source = Path(folder)
    if files_spec is None:
        relpaths = sorted(describe_folder(source))
    else:
        verify_folder(source, files_spec)
        relpaths = sorted(files_spec)
    cache = Path(cache_dir if cache_dir is not None else hf_constants.HF_HUB_CACHE)
    cache = cache.expanduser().resolve()
    repo_folder = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    snapshot = repo_folder / "snapshots" / revision
    blobs = repo_folder / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for relpath in relpaths:
        # The Hub names blobs by etag, which is the sha256 for LFS/Xet files (checkpoints).
        digest = sha256_file(source / relpath)
        blob = blobs / digest
        if not blob.is_file() or sha256_file(blob) != digest:
            _atomic_copy(source / relpath, blob)
        pointer = snapshot / relpath
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.unlink(missing_ok=True)
        try:
            pointer.symlink_to(os.path.relpath(blob, pointer.parent))
        except OSError:
            shutil.copyfile(blob, pointer)
    return snapshot


def hub_offline() -> bool:
    """Whether Hub access is disabled, from ``HF_HUB_OFFLINE`` now or at import time."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return hf_constants.HF_HUB_OFFLINE or value.upper() in _TRUE_VALUES


def _download_snapshot(
    repo_id: str,
    revision: str,
    files_spec: FileSpec,
    cache_dir: str | os.PathLike[str] | None,
) -> Path:
    # huggingface_hub reads HF_HUB_OFFLINE once at import; local_files_only honours a later
    # change, and after the first connection failure we stop paying for more timeouts.
    local_only = hub_offline()
    snapshots: set[Path] = set()
    missing: list[str] = []
    for relpath in sorted(files_spec):
        try:
            path = huggingface_hub.hf_hub_download(
                repo_id,
                relpath,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_only,
            )
        except (LocalEntryNotFoundError, OfflineModeIsEnabled, *_connection_errors()):
            missing.append(relpath)
            local_only = True
            continue
        except HfHubHTTPError as err:
            # Reachable but refused (repo deleted, private, revision gone): worth a warning
            # even when a mirror can stand in.
            logger.warning("the Hub refused %s of %s@%s: %s", relpath, repo_id, revision, err)
            raise HubUnavailableError(
                f"the Hub refused {relpath} of {repo_id}@{revision}: {err}"
            ) from err
        depth = len(PurePosixPath(relpath).parts)
        snapshots.add(Path(path).parents[depth - 1])
    if missing:
        where = cache_dir if cache_dir is not None else hf_constants.HF_HUB_CACHE
        model = repo_id.rsplit("/", 1)[-1]
        raise HubUnavailableError(
            f"{len(missing)} file(s) of {repo_id}@{revision} are not in the Hugging Face cache "
            f"({where}) and the Hub cannot be reached: {', '.join(missing)}. Run "
            f"`nif-zoo download {model}` where the Hub is reachable and copy that cache folder "
            "here (or point HF_HOME / HF_HUB_CACHE at it), or seed the cache from a copy of the "
            f"files with `nif-zoo download {model} --from-folder DIR`."
        )
    if len(snapshots) != 1:
        raise HubError(f"{repo_id}@{revision}: files resolved to several snapshots {snapshots}")
    return snapshots.pop()


def _verified_mirror(mirror: str | os.PathLike[str], files_spec: FileSpec) -> Path:
    folder = Path(mirror)
    if not folder.is_dir():
        raise HubUnavailableError(f"mirror folder {folder} does not exist")
    verify_folder(folder, files_spec)
    return folder


def _atomic_copy(source: Path, destination: Path) -> None:
    fd, tmp = tempfile.mkstemp(
        prefix=destination.name, suffix=".incomplete", dir=destination.parent
    )
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, destination)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Transport-level errors of whichever HTTP client this huggingface_hub uses."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name, attribute in (("httpx2", "TransportError"), ("httpx", "TransportError")):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        errors.append(getattr(module, attribute))
    try:
        import requests
    except ImportError:
        pass
    else:
        errors += [requests.exceptions.ConnectionError, requests.exceptions.Timeout]
    return tuple(errors)


def fetch_repo(repo_id: str, revision: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The whole repo at a pinned ``revision`` (cache only when offline); verified by the caller.

    Used for ``hf-hub:`` references, whose file list is not in the manifest: the folder's own
    ``files.json`` carries the digests.
    """
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                 local_files_only=hub_offline())
    except (LocalEntryNotFoundError, *_connection_errors()) as error:
        raise HubUnavailableError(
            f"{repo_id}@{revision} is not in the Hugging Face cache and the Hub cannot be reached "
            f"({type(error).__name__}). Run `nif-zoo download hf-hub:{repo_id}@{revision}` where "
            "the Hub is reachable, or point HF_HUB_CACHE at a cache that holds it.") from error
    return Path(path)
