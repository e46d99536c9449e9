"""Training diagnostics: per-layer log-det ranges and the conditioning of the 1x1 convolutions.

Layers ``sow`` into the ``diagnostics`` collection only when it is mutable, so ordinary calls
pay nothing. The flow theory (Liao and He, arXiv 2102.06539) ties unstable training to layers
that expand or contract volume without bound: these figures show which layer does it first.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

COLLECTION = "diagnostics"


def record(module: nn.Module, name: str, compute) -> None:
    """Sows ``compute()`` under ``name`` when diagnostics are being collected (else skips it)."""
    if module.is_mutable_collection(COLLECTION) and not module.is_initializing():
        module.sow(COLLECTION, name, compute())


def per_layer(model: nn.Module, params, x: jax.Array) -> dict[str, jax.Array]:
    """Every sown figure by layer path (a scanned level's steps numbered ``step0``, ``step1``...):
    ``<path>_log_det`` of shape (batch,), ``<path>/singular_values`` of a 1x1 convolution.
    """
    _, state = model.apply({"params": params}, x, method="latent", mutable=[COLLECTION])
    flat = traverse_util.flatten_dict(state.get(COLLECTION, {}), sep="/")
    return dict(item for path, (value,) in flat.items() for item in _split_steps(path, value))


@functools.partial(jax.jit, static_argnums=(0,))
def collect(model: nn.Module, params, x: jax.Array) -> dict[str, jax.Array]:
    """:func:`per_layer` reduced to scalars: ``<path>_log_det_min`` and ``_max`` over the batch,
    ``<path>/singular_value_max`` and ``_min``.
    """
    out = {}
    for path, value in per_layer(model, params, x).items():
        if path.endswith("log_det"):
            out[f"{path}_min"], out[f"{path}_max"] = jnp.min(value), jnp.max(value)
        elif path.endswith("singular_values"):
            out[path.replace("singular_values", "singular_value_max")] = jnp.max(value)
            out[path.replace("singular_values", "singular_value_min")] = jnp.min(value)
    return out


def _split_steps(path: str, value: jax.Array):
    """A scanned level sows one array with a leading step axis: split it into one per step."""
    if "/step/" not in path:
        return [(path, value)]
    head, tail = path.split("/step/", 1)
    return [(f"{head}/step{i}/{tail}", value[i]) for i in range(value.shape[0])]


def summary(model: nn.Module, params, x: jax.Array) -> dict[str, float]:
    """:func:`collect` as plain floats, prefixed ``diagnostics/`` for the metric writers."""
    return {f"{COLLECTION}/{k}": float(v) for k, v in collect(model, params, x).items()}
