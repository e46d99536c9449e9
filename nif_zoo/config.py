"""Architecture configuration: plain data that rebuilds a model and round-trips through JSON."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

FORMAT_VERSION = 1

Head = Literal["normal", "nif", "deep_nif"]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a zoo model's module.

    The data space is images of ``image_shape`` quantised to ``n_bits``; the flow sees them
    dequantised to ``[-1/2, 1/2)`` and logit-transformed with ``logit_lambda``.

    ``backbone``: 'glow' (``levels`` x ``steps``); the Self Normalizing Flows paper's 'dense'
    (``steps`` D x D layers) or 'cnn' (``levels`` blocks of ``steps`` 3x3 convolutions, a
    squeeze between blocks). ``linear='selfnorm'`` trains their linear layers (Glow's 1x1
    convolutions, which then need ``invconv='full'``) with self-normalizing gradients;
    ``selfnorm_inverse`` says how those layers invert (sampling, decoding): through their learned
    ``R`` ('approximate', the paper's default) or by a solve with ``W`` ('exact').
    """

    image_shape: tuple[int, int, int] = (28, 28, 1)
    n_bits: int = 3
    logit_lambda: float = 0.05
    levels: int = 2
    steps: int = 16
    hidden: int = 256
    coupling: Literal["affine", "additive"] = "affine"
    scale_fn: Literal["sigmoid", "exp_tanh"] = "sigmoid"
    invconv: Literal["lu", "full"] = "lu"
    split: Literal["passthrough", "learned"] = "passthrough"
    remat: bool = False
    unroll: bool = True
    # Stability controls (off at 0): a bound on coupling log-scales, a cap on the spectral norm
    # of the coupling networks' kernels (bi-Lipschitz control; nif_zoo.layers.lipschitz).
    max_log_scale: float = 0.0
    spectral_cap: float = 0.0
    head: Head = "normal"
    latent_dim: int = 0
    noise: Literal["diag", "isotropic"] = "diag"
    prior_layers: int = 4
    prior_hidden: int = 256
    backbone: Literal["glow", "dense", "cnn"] = "glow"
    linear: Literal["exact", "selfnorm"] = "exact"
    selfnorm_inverse: Literal["approximate", "exact"] = "approximate"

    def __post_init__(self):
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        h, w, _ = self.image_shape
        squeezes = {"glow": self.levels, "cnn": self.levels - 1}.get(self.backbone, 0)
        if h % 2**squeezes or w % 2**squeezes:
            raise ValueError(
                f"image_shape {self.image_shape} is not divisible by 2**{squeezes} (the squeezes of "
                f"{self.levels} {self.backbone} levels); use fewer levels or pad the images."
            )
        if self.backbone == "glow" and self.linear == "selfnorm" and self.invconv != "full":
            raise ValueError("a self-normalizing Glow learns full 1x1 kernels: set invconv='full'")
        if self.selfnorm_inverse not in ("approximate", "exact"):
            raise ValueError(
                f"selfnorm_inverse must be 'approximate' or 'exact', got {self.selfnorm_inverse!r}")
        for control in ("max_log_scale", "spectral_cap"):
            if getattr(self, control) < 0:
                raise ValueError(f"{control} must be >= 0 (0 turns it off), got {getattr(self, control)}")
        if not 1 <= self.n_bits <= 8:
            raise ValueError(f"n_bits must be in 1..8, got {self.n_bits}")
        if self.head in ("nif", "deep_nif") and not 0 < self.latent_dim < self.dim:
            raise ValueError(
                f"head={self.head!r} needs 0 < latent_dim < {self.dim}, got {self.latent_dim}"
            )

    @property
    def dim(self) -> int:
        h, w, c = self.image_shape
        return h * w * c

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_shape"] = list(self.image_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"unknown model config keys {sorted(unknown)}: the checkpoint was written by a "
                "newer nif_zoo; upgrade nif_zoo to load it."
            )
        return cls(**d)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)
