"""``nif-zoo bench`` for a hyperbolic VAE or its Euclidean twin: the figures its card reports.

Test log-likelihood by importance sampling with K = 500 posterior draws (Bose et al.'s estimator),
the one-sample ELBO on the same points, and the learned radius, on the whole test split (all
10,000 Fashion-MNIST images take 1-3 minutes on one CPU core) or its first ``test_limit`` points.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from nif_zoo.hyperbolic import data
from nif_zoo.hyperbolic.pretrained import PretrainedVAE

IS_SEED = 1  # the key of the IS draws in benchmarks/hyperbolic.py, so both give the same figures


def run(model: PretrainedVAE, name: str, k: int = 500, test_limit: int | None = None,
        keep_points: bool = False) -> dict:
    """IS log-likelihood (nats, mean and standard error over test points), ELBO and radius; with
    ``keep_points`` also the per-point log-likelihoods (``"points"``, for paired comparisons).
    """
    from nif_zoo.bench import machine

    started = time.time()
    dataset = model.config.dataset
    rows, _ = data.load(dataset, "test")
    scope = "all" if not test_limit or test_limit >= len(rows) else "first"
    rows = rows[:test_limit or len(rows)]
    log_p = model.log_prob(rows, rng=jax.random.key(IS_SEED), k=k)
    elbo = model.elbo(rows, rng=jax.random.key(IS_SEED))
    result = {
        "model": name, "dataset": dataset, "test_examples": len(rows), "k": k,
        "log_likelihood": {"mean": float(log_p.mean()),
                           "stderr": float(log_p.std(ddof=1) / np.sqrt(len(log_p)))},
        "elbo": float(elbo.mean()), "radius": model.radius,
        "machine": machine(), "seconds": time.time() - started,
        "data": f"{scope} {len(rows)} test points" + (", binarised at 0.5" if dataset == "fmnist" else ""),
    }
    if keep_points:
        result["points"] = np.asarray(log_p)
    return result


def metrics(bench: dict) -> dict[str, float]:
    """The flat figures the manifest and card carry (no radius for a Euclidean twin)."""
    m = {"test_log_likelihood_nats": bench["log_likelihood"]["mean"],
         "test_log_likelihood_stderr": bench["log_likelihood"]["stderr"],
         "test_elbo_nats": bench["elbo"], "radius": bench["radius"]}
    return {key: float(value) for key, value in m.items() if np.isfinite(value)}
