"""Pretrained models: load by zoo name, ``hf-hub:`` reference or folder; save in the Hub layout.

A model folder (and its Hub repo) holds ``config.json`` (format version, architecture, data
spec), ``checkpoint/`` (an Orbax checkpoint of the parameters), ``README.md`` (the card),
optional PNGs, and ``files.json`` (size and sha256 of every other file), checked on load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from nif_zoo import hub, registry
from nif_zoo.config import FORMAT_VERSION, ModelConfig
from nif_zoo.layers.preprocess import dequantize, quantize, quantize_pixels
from nif_zoo.models import FlowModel

CONFIG_FILE, CHECKSUM_FILE, CHECKPOINT_DIR, CARD_FILE = (
    "config.json", "files.json", "checkpoint", "README.md")


class IncompatibleCheckpointError(ValueError):
    """A checkpoint written by another format version, or for another architecture."""


def abstract_params(config: ModelConfig) -> Any:
    """Shapes and dtypes of a fresh model's parameters, placed on the first local device."""
    model = FlowModel(config)
    x = jax.ShapeDtypeStruct((1, *config.image_shape), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


@dataclasses.dataclass
class Pretrained:
    """A model with its weights bound: the user-facing API.

    Inputs are images of the model's shape with any leading batch shape: uint8 pixels in
    0..255 (quantised to the model's n bits and dequantised at the cell midpoints), or floats
    already dequantised to ``[-1/2, 1/2)``.
    """

    config: ModelConfig
    params: Any
    name: str = ""
    data: dict = dataclasses.field(default_factory=dict)
    card: str = ""

    @functools.cached_property
    def module(self) -> FlowModel:
        return FlowModel(self.config)

    def _apply(self, method: str, *args, static: dict | None = None, **kwargs):
        """Runs a jitted module method; ``static`` arguments are compiled in."""
        static = tuple(sorted((static or {}).items()))
        return _apply(self.module, method, self.params, args, kwargs, static)

    def _flatten(self, images) -> tuple[Any, tuple[int, ...]]:
        """Checks the image shape; returns ``(images as (-1, h, w, c), batch shape)``."""
        shape = tuple(self.config.image_shape)
        images = np.asarray(images) if not isinstance(images, jax.Array) else images
        if images.ndim < 3 or tuple(images.shape[-3:]) != shape:
            raise ValueError(f"{self.name or 'model'} takes images of shape (..., "
                             f"{', '.join(map(str, shape))}); got {tuple(images.shape)}")
        return images.reshape((-1,) + shape), tuple(images.shape[:-3])

    def _batched(self, images) -> tuple[jax.Array, tuple[int, ...]]:
        flat, batch = self._flatten(images)
        if jnp.issubdtype(flat.dtype, jnp.integer):
            self._check_pixels(flat)
            return dequantize(None, quantize_pixels(flat, self.config.n_bits),
                              self.config.n_bits)[0], batch
        if not jnp.issubdtype(flat.dtype, jnp.floating):
            raise TypeError(f"images must be uint8 (0..255) or float, got dtype {flat.dtype}")
        return jnp.asarray(flat), batch

    @staticmethod
    def _check_pixels(images) -> None:
        low, high = int(jnp.min(images)), int(jnp.max(images))
        if low < 0 or high > 255:
            raise ValueError(f"integer images must hold pixels in 0..255, got {low}..{high}")

    def log_prob(self, images, s: float = 1.0) -> jax.Array:
        """``log p(x)`` of dequantised images (at manifold-noise scale ``s``)."""
        x, batch = self._batched(images)
        return self._apply("log_prob", x, s).reshape(batch)

    def elbo(self, images, rng: jax.Array | None = None, k: int = 1) -> jax.Array:
        """The stochastic-inverse lower bound (``k`` importance samples for deep NIF)."""
        x, batch = self._batched(images)
        rng = jax.random.key(0) if rng is None else rng
        return self._apply("elbo", x, rng, static=dict(num_samples=k, iwae=k > 1)).reshape(batch)

    def bits_per_dim(self, images, rng: jax.Array | None = None, draws: int = 1,
                     s: float = 1.0) -> jax.Array:
        """Per-image bits/dim of uint8 images, averaged over ``draws`` dequantisation draws.

        ``-log p(x) / (D log 2) + n`` at manifold-noise scale ``s`` (deep NIF: its ELBO).
        """
        flat, batch = self._flatten(images)
        if not jnp.issubdtype(flat.dtype, jnp.integer):
            raise TypeError(f"bits_per_dim takes uint8 images (0..255), got dtype {flat.dtype}")
        self._check_pixels(flat)
        values = quantize_pixels(flat, self.config.n_bits)
        rng = jax.random.key(0) if rng is None else rng
        total = 0.0
        for draw in range(draws):
            key = jax.random.fold_in(rng, draw)
            x = dequantize(key, values, self.config.n_bits)[0]
            log_p = (self._apply("log_prob", x, s) if self.module.exact
                     else self._apply("elbo", x, key))
            total = total + (-log_p / (self.config.dim * math.log(2.0)) + self.config.n_bits)
        return (total / draws).reshape(batch)

    def encode(self, images) -> jax.Array:
        """The low-dimensional latent ``mu(g(x))`` (``latent_dim`` numbers per image)."""
        x, batch = self._batched(images)
        u = self._apply("encode", x)
        return u.reshape(batch + u.shape[1:])

    def decode(self, u: jax.Array, rng: jax.Array | None = None, s: float = 1.0) -> jax.Array:
        """Float images in ``[-1/2, 1/2)`` from latents; ``rng=None`` or ``s=0``: on the manifold."""
        u = jnp.asarray(u)
        batch = u.shape[:-1]
        x = self._apply("decode", u.reshape(-1, u.shape[-1]), rng, s)
        return x.reshape(batch + x.shape[1:])

    def project(self, images) -> jax.Array:
        """The closest point of the learned manifold, as float images in ``[-1/2, 1/2)``."""
        x, batch = self._batched(images)
        p = self._apply("project", x)
        return p.reshape(batch + p.shape[1:])

    def sample(self, rng: jax.Array, n: int, t: float = 1.0, s: float = 1.0) -> np.ndarray:
        """``n`` uint8 images at temperature ``t`` and manifold-noise scale ``s``."""
        return self.to_images(self.sample_float(rng, n, t, s))

    def sample_float(self, rng: jax.Array, n: int, t: float = 1.0, s: float = 1.0) -> jax.Array:
        """``n`` float images in ``[-1/2, 1/2)`` (before quantisation)."""
        return self._apply("sample", rng, t=t, s=s, static=dict(n=n))

    def to_images(self, x: jax.Array) -> np.ndarray:
        """Float images in ``[-1/2, 1/2)`` to uint8 pixels of the model's bit depth."""
        values = np.asarray(quantize(jnp.asarray(x), self.config.n_bits))
        return ((values * 255) // (2**self.config.n_bits - 1)).astype(np.uint8)

    def save_pretrained(self, folder: str | os.PathLike, card: str | None = None,
                        extra_files: dict[str, str | os.PathLike] | None = None) -> Path:
        """Writes the Hub layout to ``folder`` atomically (a complete folder or none)."""
        return save_pretrained(folder, self.config, self.params, self.data, card or self.card,
                               extra_files)



@functools.partial(jax.jit, static_argnums=(0, 1, 5))
def _apply(module: FlowModel, method: str, params, args: tuple, kwargs: dict, static: tuple):
    return module.apply({"params": params}, *args, method=method, **kwargs, **dict(static))


def save_pretrained(folder, config: ModelConfig, params, data: dict | None = None,
                    card: str = "", extra_files: dict | None = None) -> Path:
    with staged_folder(folder) as staging:
        meta = {"format_version": FORMAT_VERSION, "library": "nif_zoo",
                "model": config.to_dict(), "data": data or {}}
        (staging / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(staging / CHECKPOINT_DIR, jax.device_get(params))
        checkpointer.wait_until_finished()
        if card:
            (staging / CARD_FILE).write_text(card)
        for name, source in (extra_files or {}).items():
            shutil.copyfile(source, staging / name)
    return Path(folder).resolve()


def replace_card(folder, card: str) -> Path:
    """Rewrites a saved model's card (and its checksum record) atomically; every other file is
    kept byte for byte.
    """
    folder = Path(folder).resolve()
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{folder} has no {CONFIG_FILE}: not a nif_zoo model folder")
    with staged_folder(folder) as staging:
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        (staging / CARD_FILE).write_text(card)
    return folder


@contextlib.contextmanager
def staged_folder(folder) -> Iterator[Path]:
    """A staging folder beside ``folder``: fill it in the block; on success it gets its
    ``files.json`` and replaces ``folder`` (a complete folder or none; the old one comes back if
    the swap fails).
    """
    folder = Path(folder).resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield staging
        (staging / CHECKSUM_FILE).unlink(missing_ok=True)
        records = hub.describe_folder(staging)
        (staging / CHECKSUM_FILE).write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, old / "previous")
            try:
                os.replace(staging, folder)
            except BaseException:
                os.replace(old / "previous", folder)  # put the existing folder back
                old.rmdir()
                raise
            shutil.rmtree(old)
        else:
            os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _read_folder(folder: Path, name: str) -> Pretrained:
    checksums = folder / CHECKSUM_FILE
    if checksums.exists():
        hub.verify_folder(folder, json.loads(checksums.read_text()))
    config_path = folder / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(f"{folder} has no {CONFIG_FILE}: not a nif_zoo model folder")
    meta = json.loads(config_path.read_text())
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise IncompatibleCheckpointError(
            f"{folder} was written with checkpoint format {version}; this nif_zoo reads format "
            f"{FORMAT_VERSION}. Install the nif_zoo version that wrote it, or re-export it.")
    if isinstance(meta.get("model"), dict) and meta["model"].get("kind") == "hvae":
        from nif_zoo.hyperbolic.pretrained import read_folder  # VAEs with a hyperbolic latent

        return read_folder(folder, meta, name or folder.name)
    try:
        config = ModelConfig.from_dict(meta["model"])
    except (TypeError, ValueError) as error:
        raise IncompatibleCheckpointError(f"{folder}/{CONFIG_FILE}: {error}") from error
    target = abstract_params(config)
    try:
        params = ocp.StandardCheckpointer().restore(folder / CHECKPOINT_DIR, target)
    except (ValueError, KeyError) as error:
        raise IncompatibleCheckpointError(
            f"the checkpoint in {folder} does not match its architecture {config}: {error}"
        ) from error
    card = (folder / CARD_FILE).read_text() if (folder / CARD_FILE).exists() else ""
    return Pretrained(config, params, name or folder.name, meta.get("data", {}), card)


def resolve_reference(ref: str) -> tuple[Path, str]:
    """A local folder for a zoo name, ``hf-hub:org/repo@revision`` or a directory."""
    if ref.startswith("hf-hub:"):
        repo, _, revision = ref[len("hf-hub:"):].partition("@")
        if not revision:
            raise ValueError(f"{ref!r} has no revision: pin one, e.g. hf-hub:{repo}@<commit id>")
        return hub.fetch_repo(repo, revision), repo
    if os.path.isdir(ref):
        folder = Path(ref).resolve()  # Orbax restores from absolute paths only
        return folder, folder.name
    return registry.fetch_files(ref), ref


def load(name_or_ref: str) -> Pretrained:
    """Loads a zoo model by name (``fmnist-nif64.small``), ``hf-hub:`` reference or folder."""
    folder, name = resolve_reference(name_or_ref)
    return _read_folder(folder, name)


def create(name: str, seed: int = 0) -> Pretrained:
    """A zoo entry's architecture with fresh weights (ActNorm not yet data-initialised)."""
    entry = registry.get_entry(name)
    if entry["architecture"].get("kind") == "hvae":
        from nif_zoo.hyperbolic.pretrained import create as create_vae

        return create_vae(entry["architecture"], name, entry["data"], seed)
    config = ModelConfig.from_dict(entry["architecture"])
    # float32 like `abstract_params` and dequantised inputs: under jax_enable_x64 the default
    # float64 would make float64 parameters that `load` and the float32 inputs cannot use.
    x = jax.random.uniform(jax.random.key(seed + 1), (2, *config.image_shape), jnp.float32) - 0.5
    params = jax.jit(FlowModel(config).init)(jax.random.key(seed), x)["params"]
    return Pretrained(config, params, name, registry.get_entry(name)["data"])
