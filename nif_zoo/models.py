"""Composes the preprocessing, the Glow backbone and a prior head into one model."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from nif_zoo.config import ModelConfig
from nif_zoo.glow import Glow
from nif_zoo.heads.deep_nif import DeepNIFHead
from nif_zoo.heads.nif import GaussianNIFHead
from nif_zoo.heads.normal import StandardNormalHead
from nif_zoo.layers.preprocess import Logit
from nif_zoo.snf_flows import ConvFlow, DenseFlow


def build_head(config: ModelConfig) -> nn.Module:
    if config.head == "normal":
        return StandardNormalHead(config.dim)
    if config.head == "nif":
        return GaussianNIFHead(config.dim, config.latent_dim, config.noise)
    if config.head == "deep_nif":
        return DeepNIFHead(config.dim, config.latent_dim, config.noise, config.prior_layers,
                           config.prior_hidden)
    raise ValueError(f"unknown head {config.head!r}; use 'normal', 'nif' or 'deep_nif'")


def build_backbone(config: ModelConfig) -> nn.Module:
    c = config
    exact_inverse = c.selfnorm_inverse == "exact"
    if c.backbone == "dense":
        return DenseFlow(c.image_shape, c.steps, gradient=c.linear, exact_inverse=exact_inverse)
    if c.backbone == "cnn":
        return ConvFlow(c.image_shape, c.levels, c.steps, gradient=c.linear, exact_inverse=exact_inverse)
    if c.backbone != "glow":
        raise ValueError(f"unknown backbone {c.backbone!r}; use 'glow', 'dense' or 'cnn'")
    return Glow(c.image_shape, c.levels, c.steps, c.hidden, c.coupling == "additive",
                c.scale_fn, c.invconv == "lu", c.split, c.remat, c.unroll,
                max_log_scale=c.max_log_scale, spectral_cap=c.spectral_cap,
                selfnorm=c.linear == "selfnorm", selfnorm_exact_inverse=exact_inverse)


class FlowModel(nn.Module):
    """``x`` in ``[-1/2, 1/2)^(h, w, c)`` -> logit -> Glow -> flat ``z`` -> prior head.

    Methods take one leading batch axis; :class:`nif_zoo.pretrained.Pretrained` binds weights
    and accepts any batch shape.
    """

    config: ModelConfig

    def setup(self):
        c = self.config
        self.logit = Logit(c.logit_lambda)
        self.backbone = build_backbone(c)
        self.head = build_head(c)

    @property
    def exact(self) -> bool:
        """Whether ``log_prob`` is exact (else only a bound: deep NIF)."""
        return self.config.head != "deep_nif"

    def __call__(self, x: jax.Array) -> jax.Array:
        """Initialisation entry point: runs every part forward on data (ActNorm data init)."""
        z, log_det = self.latent(x)
        if self.config.head == "deep_nif":
            return self.head(z) + log_det
        return self.head.log_prob(z) + log_det

    def _check(self, x: jax.Array) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.config.image_shape):
            shape = ", ".join(map(str, self.config.image_shape))
            raise ValueError(f"expected images of shape (batch, {shape}), got {tuple(x.shape)}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"expected dequantised float images in [-1/2, 1/2), got dtype {x.dtype}; "
                            "use Pretrained.bits_per_dim or nif_zoo.layers.preprocess.dequantize")

    def latent(self, x: jax.Array):
        """``(z, log|det dz/dx|)``: the backbone's flat output and the logit + Glow log-det."""
        self._check(x)
        y, ld_logit = self.logit(x)
        z, ld_glow = self.backbone(y)
        return z, ld_logit + ld_glow

    def log_prob(self, x: jax.Array, s: float = 1.0) -> jax.Array:
        """Exact ``log p(x)`` (at manifold-noise scale ``s``) for the 'normal' and 'nif' heads."""
        if not self.exact:
            raise ValueError("a deep NIF head has no closed-form density: use elbo(x, rng, k)")
        z, log_det = self.latent(x)
        return self.head.log_prob(z, s) + log_det

    def elbo(self, x: jax.Array, rng: jax.Array | None = None, num_samples: int = 1,
             iwae: bool = False) -> jax.Array:
        """Lower bound on ``log p(x)`` with the stochastic inverse (closed form for 'nif')."""
        z, log_det = self.latent(x)
        if self.config.head == "nif":
            return self.head.elbo(z) + log_det
        if self.config.head == "deep_nif":
            return self.head.bound(z, rng, num_samples, iwae) + log_det
        return self.head.log_prob(z) + log_det

    def objective(self, x: jax.Array, rng: jax.Array) -> jax.Array:
        """What training maximises: ``log p(x)`` where exact, else the ELBO."""
        return self.log_prob(x) if self.exact else self.elbo(x, rng)

    def bits_per_dim(self, x: jax.Array, n_bits: int | None = None) -> jax.Array:
        """``-log p(x) / (D log 2) + n`` for dequantised ``x`` (math note)."""
        n_bits = self.config.n_bits if n_bits is None else n_bits
        return -self.log_prob(x) / (self.config.dim * math.log(2.0)) + n_bits

    def encode(self, x: jax.Array) -> jax.Array:
        """The low-dimensional latent: the head's pseudo-inverse of the backbone's output."""
        return self.head.encode(self.latent(x)[0])

    def decode(self, u: jax.Array, rng: jax.Array | None = None, s: float = 1.0) -> jax.Array:
        """``g^-1(A u + b + s sigma e)`` back to ``[-1/2, 1/2)`` images; ``s=0``: on the manifold."""
        z = self.head.decode(u, rng, s)
        y, _ = self.backbone(z, inverse=True)
        return self.logit(y, inverse=True)[0]

    def project(self, x: jax.Array) -> jax.Array:
        """The closest point of the learned manifold: ``g^-1(A mu(g(x)) + b)``."""
        return self.decode(self.encode(x), None, 0.0)

    def sample(self, rng: jax.Array, n: int, t: float = 1.0, s: float = 1.0,
               dtype=jnp.float32) -> jax.Array:
        """``n`` images at temperature ``t`` and manifold-noise scale ``s``."""
        rng_u, rng_noise = jax.random.split(rng)
        u = self.head.sample_latent(rng_u, n, t, dtype)
        return self.decode(u, rng_noise, s)
