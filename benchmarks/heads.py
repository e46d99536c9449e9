"""The Woodbury NIF head against a dense Gaussian with the same covariance.

``python -m benchmarks.heads [--quick]``: for each latent size D and manifold dimension k, the
time of ``woodbury.log_prob`` on a batch (the k x k Cholesky included, as in training) and of a
dense reference that builds ``C = A A^T + diag(sigma^2)``, factors it and solves; then the same
for log-prob plus its gradient w.r.t. ``(A, b, log_var)``. Compile time is reported apart.
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _timing
from nif_zoo.heads import woodbury


def dense_log_prob(z: jax.Array, a: jax.Array, b: jax.Array, log_var: jax.Array) -> jax.Array:
    """``log N(z; b, A A^T + diag(exp(log_var)))`` the textbook way: D x D Cholesky."""
    d = z.shape[-1]
    cov = a @ a.T + jnp.diag(jnp.exp(log_var))
    chol = jnp.linalg.cholesky(cov)
    w = jax.scipy.linalg.solve_triangular(chol, (z - b).T, lower=True)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return -0.5 * (d * math.log(2 * math.pi) + log_det + jnp.sum(w * w, axis=0))


def with_grad(log_prob):
    """Mean log-prob and its gradient w.r.t. ``(A, b, log_var)``: what a training step needs."""
    def f(z, a, b, log_var):
        return jax.value_and_grad(lambda *p: jnp.mean(log_prob(z, *p)), argnums=(0, 1, 2))(
            a, b, log_var)
    return f


def problem(d: int, k: int, batch: int, seed: int = 0):
    """A well-conditioned head (columns of norm ~1, unit-scale noise) and data drawn from it."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, k), np.float32) / np.sqrt(d)
    b = 0.1 * rng.standard_normal(d).astype(np.float32)
    log_var = (0.1 * rng.standard_normal(d) - 1.0).astype(np.float32)
    u = rng.standard_normal((batch, k), np.float32)
    z = u @ a.T + b + np.exp(0.5 * log_var) * rng.standard_normal((batch, d), np.float32)
    return tuple(jnp.asarray(x) for x in (z, a, b, log_var))


def bench_case(d: int, k: int, batch: int, repeats: int, budget_s: float) -> dict:
    args = problem(d, k, batch)
    row: dict = {"D": d, "k": k, "batch": batch,
                 "dense_matrix_mb": d * d * 4 / 1e6}  # one float32 D x D matrix
    for task, wrap in (("log_prob", lambda f: f), ("log_prob_grad", with_grad)):
        outputs = {}
        for name, fn in (("woodbury", woodbury.log_prob), ("dense", dense_log_prob)):
            compiled, compile_s = _timing.compile_timed(wrap(fn), *args)
            timing = _timing.measure(lambda c=compiled: c(*args), repeats, budget_s=budget_s)
            outputs[name] = compiled(*args)
            row[f"{task}_{name}"] = {**timing, "compile_s": compile_s,
                                     "temp_mb": (_timing.temp_bytes(compiled) or 0) / 1e6}
        wb, dense = outputs["woodbury"], outputs["dense"]
        if task == "log_prob_grad":
            wb, dense = wb[0], dense[0]  # compare the values; the gradients follow from them
        row[f"{task}_max_abs_diff"] = float(jnp.max(jnp.abs(wb - dense)))
        row[f"{task}_speedup"] = (row[f"{task}_dense"]["median_s"]
                                  / row[f"{task}_woodbury"]["median_s"])
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="D = 784 only, few repeats")
    p.add_argument("--dims", type=int, nargs="+", default=[784, 3072, 12288])
    p.add_argument("--ks", type=int, nargs="+", default=[64, 512])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--budget", type=float, default=30.0,
                   help="seconds of timed runs per case before stopping early (at least 3 runs)")
    p.add_argument("--output", help="JSON path (default benchmarks/results/heads.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.dims, args.repeats, args.budget = [784], 3, 5.0

    _timing.warn_if_busy()
    print(f"float32, batch {args.batch}; dense needs D^2 floats per matrix: "
          + ", ".join(f"D={d}: {d * d * 4 / 1e6:.0f} MB" for d in args.dims)
          + " (the gradient holds several)", flush=True)
    rows = []
    for d in args.dims:
        for k in args.ks:
            if k >= d:
                continue
            rows.append(bench_case(d, k, args.batch, args.repeats, args.budget))
            r = rows[-1]
            print(f"  D={d} k={k}: log_prob {r['log_prob_speedup']:.1f}x, "
                  f"with gradient {r['log_prob_grad_speedup']:.1f}x", flush=True)

    ms = lambda r, key: 1e3 * r[key]["median_s"]  # noqa: E731
    print(_timing.table(
        ["D", "k", "woodbury ms", "dense ms", "ratio", "wb+grad ms", "dense+grad ms", "ratio",
         "compile wb/dense s", "dense temp MB"],
        [[r["D"], r["k"], ms(r, "log_prob_woodbury"), ms(r, "log_prob_dense"),
          r["log_prob_speedup"], ms(r, "log_prob_grad_woodbury"), ms(r, "log_prob_grad_dense"),
          r["log_prob_grad_speedup"],
          f"{r['log_prob_woodbury']['compile_s']:.2f}/{r['log_prob_dense']['compile_s']:.2f}",
          r["log_prob_grad_dense"]["temp_mb"]] for r in rows]))
    worst = max((r["log_prob_max_abs_diff"] for r in rows), default=0.0)
    print(f"largest |woodbury - dense| log-prob difference: {worst:.3g} nats")
    path = _timing.write_json(_timing.output_path("heads", args.quick, args.output), {
        "benchmark": "heads", "quick": args.quick, "dtype": "float32", "batch": args.batch,
        "machine": _timing.machine(), "rows": rows,
        "note": "ratio = dense / woodbury median time; compile excluded from medians"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
