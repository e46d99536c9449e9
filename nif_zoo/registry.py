"""The model registry: a validated JSON manifest of every zoo model, recipe or published."""

from __future__ import annotations

import copy
import difflib
import fnmatch
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from nif_zoo import hub
from nif_zoo.config import ModelConfig

SUPPORTED_FORMAT_VERSION = 1
MANIFEST_ENV = "NIF_ZOO_MANIFEST"
MANIFEST_FILENAME = "checkpoints_manifest.json"
DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / MANIFEST_FILENAME

STATUSES = ("recipe", "published")
DATASETS = ("fashion_mnist", "cifar10", "celeba")
ENTRY_KEYS = frozenset(
    {
        "status",
        "description",
        "architecture",
        "data",
        "hf_repo",
        "revision",
        "mirror",
        "files",
        "metrics",
        "metrics_command",
        "card",
        "train_config",
    }
)
OPTIONAL_ENTRY_KEYS = frozenset({"notes"})  # Markdown shown on the card (published models)
DATA_KEYS = frozenset({"dataset", "image_shape", "n_bits", "preprocessing", "split"})

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(ValueError):
    """The manifest is unreadable or one of its entries is invalid."""


_Fail = Callable[[str, str], ManifestError]


class UnknownModelError(KeyError):
    """No model of that name is registered."""

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message and show it in quotes.
        return str(self.args[0]) if self.args else ""


def manifest_path() -> Path:
    """Return the manifest in use: ``$NIF_ZOO_MANIFEST`` if set, else the repository's."""
    override = os.environ.get(MANIFEST_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return DEFAULT_MANIFEST


def resolve(relative: str | os.PathLike[str]) -> Path:
    """Resolve a manifest-relative path (``card``, ``mirror``) against the manifest's folder."""
    return manifest_path().parent / relative


def load_manifest(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read and validate the whole manifest; raises `ManifestError` on any problem."""
    path = Path(path) if path is not None else manifest_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ManifestError(f"cannot read model manifest {path}: {err}") from err
    try:
        manifest = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as err:
        raise ManifestError(f"model manifest {path} is not valid JSON: {err}") from err
    except ManifestError as err:
        raise ManifestError(f"model manifest {path}: {err}") from None
    validate_manifest(manifest, root=path.parent)
    return manifest


def validate_manifest(manifest: Any, root: Path) -> None:
    """Check the manifest's structure and every entry; card paths resolve against ``root``."""
    if not isinstance(manifest, dict):
        raise ManifestError("model manifest must be a JSON object")
    version = manifest.get("format_version")
    if version != SUPPORTED_FORMAT_VERSION:
        raise ManifestError(
            f"model manifest has format_version {version!r} but this nif_zoo reads version "
            f"{SUPPORTED_FORMAT_VERSION}: the manifest is from an incompatible nif_zoo version; "
            "upgrade nif_zoo (or use the manifest shipped with it)."
        )
    unknown = set(manifest) - {"format_version", "models"}
    if unknown:
        raise ManifestError(f"model manifest has unknown top-level keys {sorted(unknown)}")
    models = manifest.get("models")
    if not isinstance(models, dict):
        raise ManifestError("model manifest needs a 'models' object mapping names to entries")
    for name, entry in models.items():
        validate_entry(name, entry, root)


def validate_entry(name: str, entry: Any, root: Path) -> None:
    """Validate one manifest entry, raising `ManifestError` naming the entry and field."""

    def fail(field: str, problem: str) -> ManifestError:
        return ManifestError(f"model {name!r}, field {field!r}: {problem}")

    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ManifestError(
            f"model name {name!r} must start with a letter or digit and use only "
            "letters, digits, '.', '_' and '-'"
        )
    if not isinstance(entry, dict):
        raise ManifestError(f"model {name!r}: entry must be a JSON object")
    missing = ENTRY_KEYS - set(entry)
    if missing:
        raise fail(sorted(missing)[0], f"missing (entry lacks {sorted(missing)})")
    extra = set(entry) - ENTRY_KEYS - OPTIONAL_ENTRY_KEYS
    if extra:
        raise fail(sorted(extra)[0], f"unknown field(s) {sorted(extra)}")

    status = entry["status"]
    if status not in STATUSES:
        raise fail("status", f"must be one of {list(STATUSES)}, got {status!r}")
    for field in ("description", "card", "train_config"):
        if not isinstance(entry[field], str) or not entry[field]:
            raise fail(field, "must be a non-empty string")
    if entry["metrics_command"] is not None and not isinstance(entry["metrics_command"], str):
        raise fail("metrics_command", "must be a string or null")

    if isinstance(entry["architecture"], dict) and entry["architecture"].get("kind") == "hvae":
        from nif_zoo.hyperbolic.config import check_registry_entry  # VAEs with a hyperbolic latent

        try:
            check_registry_entry(entry["architecture"], entry["data"])
        except (TypeError, ValueError) as err:
            raise fail("architecture", f"is not a valid hvae entry: {err}") from err
    else:
        config = _check_architecture(entry["architecture"], fail)
        _check_data(entry["data"], config, fail)

    if not isinstance(entry["hf_repo"], str) or not _REPO_ID.fullmatch(entry["hf_repo"]):
        raise fail("hf_repo", f"must look like 'org/name', got {entry['hf_repo']!r}")
    revision = entry["revision"]
    if revision is not None and (not isinstance(revision, str) or not _COMMIT.fullmatch(revision)):
        raise fail("revision", f"must be null or a 40-hex commit id, got {revision!r}")
    mirror = entry["mirror"]
    if mirror is not None and not _is_relative_posix(mirror):
        raise fail("mirror", f"must be null or a relative folder path, got {mirror!r}")
    _check_files(entry["files"], fail)
    _check_metrics(entry["metrics"], fail)

    if status == "published":
        if not entry["files"]:
            raise fail("files", "a published model must list its files")
        if revision is None and mirror is None:
            raise fail("revision", "a published model needs a Hub revision or a mirror folder")
    else:
        if entry["files"] or revision is not None:
            raise fail("status", "a recipe has no weights: its files must be empty, revision null")

    if not _is_relative_posix(entry["card"]):
        raise fail("card", f"must be a relative path, got {entry['card']!r}")
    if not (root / entry["card"]).is_file():
        raise fail("card", f"card file {root / entry['card']} does not exist")


def list_models(pattern: str | None = None, published_only: bool = False) -> list[str]:
    """Return sorted model names, optionally filtered by an fnmatch ``pattern`` and status."""
    models = load_manifest()["models"]
    names = sorted(models)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if published_only:
        names = [n for n in names if models[n]["status"] == "published"]
    return names


def get_entry(name: str) -> dict[str, Any]:
    """Return a copy of the manifest entry for ``name``; raise `UnknownModelError` if absent."""
    models = load_manifest()["models"]
    if name not in models:
        raise UnknownModelError(_unknown_model_message(name, models))
    return copy.deepcopy(models[name])


def info(name: str) -> dict[str, Any]:
    """Return the manifest entry for ``name`` with the name itself under ``"name"``."""
    return {"name": name, **get_entry(name)}


def fetch_files(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return a local folder holding the verified files of model ``name`` (see `hub.fetch`)."""
    entry = get_entry(name)
    if entry["status"] != "published":
        raise hub.HubUnavailableError(
            f"{name} is a recipe: no weights exist yet. Train it with "
            f"`nif-zoo train {entry['train_config']} --workdir workdirs/{name}`."
        )
    mirror = resolve(entry["mirror"]) if entry["mirror"] else None
    return hub.fetch(
        entry["hf_repo"], entry["revision"], entry["files"], mirror=mirror, cache_dir=cache_dir
    )


def write_entry(name: str, entry: Mapping[str, Any]) -> None:
    """Add or replace ``name`` in the manifest, validating first and writing atomically."""
    path = manifest_path()
    manifest = load_manifest(path)
    manifest["models"][name] = copy.deepcopy(dict(entry))
    write_manifest(manifest, path)


def write_manifest(manifest: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> None:
    """Validate ``manifest`` and atomically replace the file with sorted, indented JSON."""
    path = Path(path) if path is not None else manifest_path()
    validate_manifest(manifest, root=path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            json.dump(manifest, tmp, indent=2, sort_keys=True, allow_nan=False)
            tmp.write("\n")
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ManifestError(
                f"duplicate key {key!r}: each model name (and each field) may appear only once"
            )
        result[key] = value
    return result


def _unknown_model_message(name: str, models: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(models), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"no model named {name!r} in {manifest_path()}.{hint} "
        "See nif_zoo.list_models() for every registered name."
    )


def _check_architecture(architecture: Any, fail: _Fail) -> ModelConfig:
    if not isinstance(architecture, dict):
        raise fail("architecture", "must be a ModelConfig dict")
    try:
        return ModelConfig.from_dict(architecture)
    except (TypeError, ValueError) as err:
        raise fail("architecture", f"is not a valid ModelConfig: {err}") from err


def _check_data(data: Any, config: ModelConfig, fail: _Fail) -> None:
    if not isinstance(data, dict) or set(data) != DATA_KEYS:
        raise fail("data", f"must be an object with exactly the keys {sorted(DATA_KEYS)}")
    if data["dataset"] not in DATASETS:
        raise fail("data.dataset", f"must be one of {list(DATASETS)}, got {data['dataset']!r}")
    if list(data["image_shape"]) != list(config.image_shape):
        raise fail(
            "data.image_shape",
            f"{data['image_shape']} disagrees with architecture {list(config.image_shape)}",
        )
    if data["n_bits"] != config.n_bits:
        raise fail("data.n_bits", f"{data['n_bits']} disagrees with architecture {config.n_bits}")
    for field in ("preprocessing", "split"):
        if not isinstance(data[field], str) or not data[field]:
            raise fail(f"data.{field}", "must be a non-empty string")


def _check_files(files: Any, fail: _Fail) -> None:
    if not isinstance(files, dict):
        raise fail("files", "must be an object mapping relative paths to {size, sha256}")
    for relpath, record in files.items():
        if not _is_relative_posix(relpath):
            raise fail("files", f"{relpath!r} is not a relative POSIX path inside the repo")
        if not isinstance(record, dict) or set(record) != {"size", "sha256"}:
            raise fail(f"files[{relpath!r}]", "must be exactly {'size': int, 'sha256': hex}")
        size, digest = record["size"], record["sha256"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise fail(f"files[{relpath!r}].size", f"must be a non-negative int, got {size!r}")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise fail(f"files[{relpath!r}].sha256", f"must be 64 lowercase hex, got {digest!r}")


def _check_metrics(metrics: Any, fail: _Fail) -> None:
    if not isinstance(metrics, dict):
        raise fail("metrics", "must be an object mapping metric names to numbers")
    for key, value in metrics.items():
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or not math.isfinite(value):
            raise fail(f"metrics[{key!r}]", f"must be a finite number, got {value!r}")


def _is_relative_posix(path: Any) -> bool:
    if not isinstance(path, str) or not path or "\\" in path:
        return False
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts and str(pure) == path.rstrip("/")
