"""Architecture of the VAEs with a hyperbolic latent and their Euclidean twins: plain data."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

KIND = "hvae"  # the marker in config.json and manifest entries that routes loading here
POSTERIORS = ("euclidean", "wrapped", "tc", "whc")
DATASETS = {"bdp": 50, "fmnist": 784}
REGISTRY_DATASETS = ("bdp", "fashion_mnist")
REGISTRY_DATA_KEYS = frozenset({"dataset", "preprocessing", "split"})


@dataclasses.dataclass(frozen=True)
class HVAEConfig:
    """One hidden layer each for encoder and decoder, as in the paper's feed-forward VAEs.

    ``posterior``: 'euclidean' (Gaussian latent in R^n, affine-coupling flow), 'wrapped'
    (wrapped normal on H^n, no flow), 'tc' or 'whc' (wrapped normal pushed through
    ``flow_layers`` tangent / wrapped hyperboloid couplings). ``likelihood``: 'gaussian'
    (unit variance, for the standardised branching diffusion) or 'bernoulli' (binarised images).
    """

    dataset: str = "bdp"
    data_dim: int = 50
    latent: int = 2
    posterior: Literal["euclidean", "wrapped", "tc", "whc"] = "whc"
    hidden: int = 200
    flow_layers: int = 2
    flow_hidden: int = 64
    likelihood: Literal["gaussian", "bernoulli"] = "gaussian"
    radius: float = 1.0
    learn_radius: bool = True

    def __post_init__(self):
        if self.posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {POSTERIORS}, got {self.posterior!r}")
        if self.likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli', got {self.likelihood!r}")
        if self.latent < 2 and self.posterior in ("euclidean", "tc", "whc") and self.flow_layers:
            raise ValueError("a coupling flow needs latent >= 2")
        if self.radius <= 0:
            raise ValueError(f"radius must be positive, got {self.radius}")

    @property
    def hyperbolic(self) -> bool:
        return self.posterior != "euclidean"

    @property
    def has_flow(self) -> bool:
        return self.posterior != "wrapped" and self.flow_layers > 0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HVAEConfig:
        d = {k: v for k, v in d.items() if k != "kind"}
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown hvae config keys {sorted(unknown)}: written by a newer nif_zoo; "
                             "upgrade nif_zoo to load it.")
        return cls(**d)


def for_dataset(dataset: str, latent: int, posterior: str, **changes: Any) -> HVAEConfig:
    """The zoo's recipe: the paper's likelihood per dataset, smaller layers for one CPU core."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    base = dict(dataset=dataset, data_dim=DATASETS[dataset], latent=latent, posterior=posterior)
    if dataset == "bdp":
        base.update(hidden=200, likelihood="gaussian")
    else:
        base.update(hidden=256, likelihood="bernoulli")
    return HVAEConfig(**{**base, **changes})


def check_registry_entry(architecture: dict, data: Any) -> None:
    """Validates a manifest entry's ``architecture`` and ``data`` for a VAE; raises ValueError."""
    HVAEConfig.from_dict(architecture)
    if not isinstance(data, dict) or set(data) != REGISTRY_DATA_KEYS:
        raise ValueError(f"data must be an object with exactly the keys {sorted(REGISTRY_DATA_KEYS)}")
    if data["dataset"] not in REGISTRY_DATASETS:
        raise ValueError(f"data.dataset must be one of {list(REGISTRY_DATASETS)}, got {data['dataset']!r}")
    for field in ("preprocessing", "split"):
        if not isinstance(data[field], str) or not data[field]:
            raise ValueError(f"data.{field} must be a non-empty string")
