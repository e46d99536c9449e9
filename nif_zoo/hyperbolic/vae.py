"""VAE with a latent on H^n (posterior: wrapped normal, optionally through TC / WHC layers),
and its Euclidean twin (Gaussian posterior through affine couplings), as in Bose et al. 2020.

Latents are ``(..., n + 1)`` points of H^n (hyperbolic) or ``(..., n)`` vectors (Euclidean). The
prior is the wrapped normal at the origin with unit scale (a standard normal for the twin). As in
the authors' code the decoder reads the tangent coordinates ``log_o(z)``, which stay of moderate
size where ambient coordinates grow like ``exp(d / R)``. Every stochastic method takes its rng.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nif_zoo.hyperbolic import lorentz, wrapped_normal
from nif_zoo.hyperbolic.config import HVAEConfig
from nif_zoo.hyperbolic.couplings import LAYERS, EuclideanCoupling

MIN_SCALE = 1e-5  # added to the posterior scale, as the authors do, so it never collapses


def _inverse_softplus(y: float) -> float:
    return float(np.log(np.expm1(y)))


def gaussian_log_prob(x: jax.Array, mean: jax.Array, scale: jax.Array) -> jax.Array:
    return -0.5 * jnp.sum(((x - mean) / scale) ** 2 + 2.0 * jnp.log(scale) + np.log(2.0 * np.pi), -1)


class HVAE(nn.Module):
    config: HVAEConfig

    def setup(self):
        c = self.config
        self.encoder_hidden = nn.Dense(c.hidden)
        self.encoder_mean = nn.Dense(c.latent)
        self.encoder_scale = nn.Dense(c.latent)
        self.decoder_hidden = nn.Dense(c.hidden)
        self.decoder_out = nn.Dense(c.data_dim)
        if c.hyperbolic and c.learn_radius:
            raw = self.param("raw_radius", nn.initializers.constant(_inverse_softplus(c.radius), jnp.float32),
                             ())
            self.radius = nn.softplus(raw)
        else:
            self.radius = c.radius
        if not c.has_flow:
            self.flow = ()
        elif c.hyperbolic:
            self.flow = tuple(LAYERS[c.posterior](radius=self.radius, hidden=c.flow_hidden, parity=i % 2)
                              for i in range(c.flow_layers))
        else:
            self.flow = tuple(EuclideanCoupling(hidden=c.flow_hidden, parity=i % 2)
                              for i in range(c.flow_layers))

    def __call__(self, x: jax.Array, rng: jax.Array) -> jax.Array:
        return self.elbo(x, rng)

    def current_radius(self) -> jax.Array:
        return jnp.asarray(self.radius)

    def posterior_base(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(mean, scale)`` of the base posterior: mean on H^n (or in R^n), scale per dimension."""
        h = nn.relu(self.encoder_hidden(x))
        mean = self.encoder_mean(h)
        scale = nn.softplus(self.encoder_scale(h)) + MIN_SCALE
        if self.config.hyperbolic:
            mean = lorentz.exp_origin(mean, self.radius)
        return mean, scale

    def push(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Base samples through the posterior flow (sampling direction); ``(z_K, sum log-det)``."""
        batch = z.shape[:-1]
        flat = z.reshape(-1, z.shape[-1])
        total = jnp.zeros(flat.shape[0], flat.dtype)
        for layer in self.flow:
            flat, log_det = layer(flat, inverse=True)
            total = total + log_det
        return flat.reshape(z.shape), total.reshape(batch)

    def sample_posterior(self, x: jax.Array, rng: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
        """``(z, log q(z | x))``, ``k`` draws per row: shapes ``(k, batch, ...)`` and ``(k, batch)``."""
        mean, scale = self.posterior_base(x)
        if self.config.hyperbolic:
            z, log_q = wrapped_normal.sample(rng, mean, scale, self.radius, (k,))
        else:
            z = mean + scale * jax.random.normal(rng, (k, *scale.shape), scale.dtype)
            log_q = gaussian_log_prob(z, mean, scale)
        z, log_det = self.push(z)
        return z, log_q - log_det

    def log_prior(self, z: jax.Array) -> jax.Array:
        if self.config.hyperbolic:
            return wrapped_normal.origin_log_prob(z, jnp.ones(z.shape[-1] - 1, z.dtype), self.radius)
        return gaussian_log_prob(z, 0.0, 1.0)

    def decoder_output(self, z: jax.Array) -> jax.Array:
        """Bernoulli logits or Gaussian means of ``p(x | z)``."""
        features = lorentz.log_origin(z, self.radius) if self.config.hyperbolic else z
        return self.decoder_out(nn.relu(self.decoder_hidden(features)))

    def log_likelihood(self, x: jax.Array, z: jax.Array) -> jax.Array:
        out = self.decoder_output(z)
        if self.config.likelihood == "bernoulli":
            return jnp.sum(x * out - nn.softplus(out), -1)
        return gaussian_log_prob(x, out, 1.0)

    def log_weights(self, x: jax.Array, rng: jax.Array, k: int) -> jax.Array:
        """``log p(x | z) + log p(z) - log q(z | x)`` for ``k`` posterior draws: ``(k, batch)``."""
        z, log_q = self.sample_posterior(x, rng, k)
        return self.log_likelihood(x, z) + self.log_prior(z) - log_q

    def elbo(self, x: jax.Array, rng: jax.Array) -> jax.Array:
        """One-sample ELBO per row (the training objective)."""
        return self.log_weights(x, rng, 1)[0]

    def encode(self, x: jax.Array) -> jax.Array:
        """The posterior's base mean pushed through the flow: one latent point per row."""
        return self.push(self.posterior_base(x)[0])[0]

    def decode(self, z: jax.Array) -> jax.Array:
        """The mean of ``p(x | z)``: pixel probabilities or Gaussian means."""
        out = self.decoder_output(z)
        return nn.sigmoid(out) if self.config.likelihood == "bernoulli" else out

    def sample_prior(self, rng: jax.Array, n: int, dtype=jnp.float32) -> jax.Array:
        eps = jax.random.normal(rng, (n, self.config.latent), dtype)
        return lorentz.exp_origin(eps, self.radius) if self.config.hyperbolic else eps

    def sample(self, rng: jax.Array, n: int) -> jax.Array:
        """Means of ``p(x | z)`` for ``n`` draws from the prior."""
        return self.decode(self.sample_prior(rng, n))


@functools.partial(jax.jit, static_argnums=0)
def elbo_per_row(model: HVAE, params, x: jax.Array, rng: jax.Array) -> jax.Array:
    """One-sample ELBO of each row, jitted (training's evaluation and loaded models share it)."""
    return model.apply({"params": params}, x, rng, method=HVAE.elbo)


def importance_log_likelihood(model: HVAE, params, x, rng: jax.Array, k: int = 500,
                              chunk: int = 50, batch: int = 256) -> np.ndarray:
    """``log p(x)`` per row by importance sampling with the posterior: ``logmeanexp`` of ``k``
    log-weights, drawn ``chunk`` at a time over row blocks of ``batch`` to bound memory.
    """
    x = np.asarray(x)
    out = []
    for start in range(0, len(x), batch):
        rows = jnp.asarray(x[start:start + batch])
        keys = jax.random.split(jax.random.fold_in(rng, start), -(-k // chunk))
        weights = [_log_weights(model, params, rows, key, min(chunk, k - i * chunk))
                   for i, key in enumerate(keys)]
        log_w = jnp.concatenate(weights, 0)
        out.append(np.asarray(jax.nn.logsumexp(log_w, 0) - np.log(k)))
    return np.concatenate(out) if out else np.zeros(0)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _log_weights(model: HVAE, params, x, rng, k):
    return model.apply({"params": params}, x, rng, k, method=HVAE.log_weights)
