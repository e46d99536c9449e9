"""Trained hyperbolic VAEs (and Euclidean twins) as zoo models: what ``nif_zoo.load`` returns.

The folder layout is the zoo's (``config.json``, an Orbax ``checkpoint/``, ``README.md``,
``files.json``); ``config.json``'s ``model`` carries ``"kind": "hvae"``, which routes loading here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from nif_zoo import pretrained as zoo
from nif_zoo.hyperbolic import lorentz
from nif_zoo.hyperbolic.config import HVAEConfig
from nif_zoo.hyperbolic.data import as_rows
from nif_zoo.hyperbolic.vae import HVAE, elbo_per_row, importance_log_likelihood


@dataclasses.dataclass
class PretrainedVAE:
    """A VAE with its weights bound. Data are rows of ``data_dim`` floats (or, for Fashion-MNIST,
    images: uint8 pixels are binarised at 0.5, the test-set convention); latents are points of
    H^n as ``(..., n + 1)`` ambient coordinates, or ``(..., n)`` vectors for a Euclidean twin.
    """

    config: HVAEConfig
    params: Any
    name: str = ""
    data: dict = dataclasses.field(default_factory=dict)
    card: str = ""

    @functools.cached_property
    def module(self) -> HVAE:
        return HVAE(self.config)

    @property
    def radius(self) -> float:
        """The hyperboloid's radius R (curvature -1/R^2); nan for a Euclidean twin."""
        if not self.config.hyperbolic:
            return float("nan")
        return float(_apply(self.module, "current_radius", self.params, ()))

    def _rows(self, x) -> tuple[jax.Array, tuple[int, ...]]:
        rows = as_rows(x, self.config.data_dim)
        return rows.reshape(-1, self.config.data_dim), rows.shape[:-1]

    def encode(self, x) -> jax.Array:
        """The latent point of each row: the posterior's base mean pushed through its flow."""
        rows, batch = self._rows(x)
        z = _apply(self.module, "encode", self.params, (rows,))
        return z.reshape(batch + z.shape[-1:])

    def decode(self, z) -> jax.Array:
        """The mean of ``p(x | z)`` (pixel probabilities for Fashion-MNIST)."""
        z = jnp.asarray(z, jnp.float32)
        if self.config.hyperbolic and lorentz.is_concrete(z):
            lorentz.check_on_manifold(z, self.radius)
        out = _apply(self.module, "decode", self.params, (z.reshape(-1, z.shape[-1]),))
        return out.reshape(z.shape[:-1] + out.shape[-1:])

    def sample_latent(self, rng: jax.Array, n: int) -> jax.Array:
        """``n`` draws from the prior (the wrapped normal at the origin, or N(0, I))."""
        return _apply(self.module, "sample_prior", self.params, (rng,), static=(("n", n),))

    def sample(self, rng: jax.Array, n: int) -> jax.Array:
        """Means of ``p(x | z)`` for ``n`` prior draws."""
        return self.decode(self.sample_latent(rng, n))

    def elbo(self, x, rng: jax.Array | None = None) -> np.ndarray:
        """One-sample ELBO per row (nats)."""
        rows, batch = self._rows(x)
        rng = jax.random.key(0) if rng is None else rng
        return np.asarray(elbo_per_row(self.module, self.params, rows, rng)).reshape(batch)

    def log_prob(self, x, rng: jax.Array | None = None, k: int = 500, chunk: int = 50) -> np.ndarray:
        """``log p(x)`` per row (nats) by importance sampling with ``k`` posterior draws (the paper's
        estimator, K = 500); seeded by ``rng`` (key 0 if None), so repeated calls agree.
        """
        rows, batch = self._rows(x)
        rng = jax.random.key(0) if rng is None else rng
        return importance_log_likelihood(self.module, self.params, rows, rng, k, chunk).reshape(batch)

    def to_poincare(self, z) -> jax.Array:
        """Poincare-ball coordinates of latent points (inside the ball of radius R)."""
        return lorentz.to_poincare(jnp.asarray(z), self.radius)

    def save_pretrained(self, folder: str | os.PathLike, card: str | None = None,
                        extra_files: dict[str, str | os.PathLike] | None = None) -> Path:
        """Writes the zoo's folder layout atomically (a complete folder or none)."""
        return zoo.save_pretrained(folder, self.config, self.params, self.data, card or self.card,
                                   extra_files)


@functools.partial(jax.jit, static_argnums=(0, 1), static_argnames="static")
def _apply(module: HVAE, method: str, params, args: tuple, static: tuple = ()):
    return module.apply({"params": params}, *args, method=method, **dict(static))


def abstract_params(config: HVAEConfig) -> Any:
    """Shapes and dtypes (float32) of a fresh model's parameters."""
    x = jax.ShapeDtypeStruct((1, config.data_dim), jnp.float32)
    return jax.eval_shape(HVAE(config).init, jax.random.key(0), x, jax.random.key(1))["params"]


def read_folder(folder: Path, meta: dict, name: str) -> PretrainedVAE:
    """The model in a verified zoo folder whose ``config.json`` says ``kind: hvae``."""
    try:
        config = HVAEConfig.from_dict(meta["model"])
    except (TypeError, ValueError) as error:
        raise zoo.IncompatibleCheckpointError(f"{folder}/{zoo.CONFIG_FILE}: {error}") from error
    try:
        params = ocp.StandardCheckpointer().restore(folder / zoo.CHECKPOINT_DIR, abstract_params(config))
    except (ValueError, KeyError) as error:
        raise zoo.IncompatibleCheckpointError(
            f"the checkpoint in {folder} does not match its architecture {config}: {error}") from error
    params = jax.device_put(params, jax.local_devices()[0])  # committed, as in training: shared compiles
    card_path = folder / zoo.CARD_FILE
    card = card_path.read_text() if card_path.exists() else ""
    return PretrainedVAE(config, params, name, meta.get("data", {}), card)


def create(architecture: dict, name: str = "", data: dict | None = None, seed: int = 0) -> PretrainedVAE:
    """A VAE of the given architecture (a manifest entry's) with fresh weights."""
    config = HVAEConfig.from_dict(architecture)
    x = jnp.zeros((1, config.data_dim), jnp.float32)
    params = jax.jit(HVAE(config).init)(jax.random.key(seed), x, jax.random.key(seed + 1))["params"]
    return PretrainedVAE(config, params, name, data or {})
