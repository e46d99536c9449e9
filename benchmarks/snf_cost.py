"""Cost of one training step of a D x D linear flow layer: self-normalizing vs exact gradient.

``python -m benchmarks.snf_cost [--quick]``: for each D, the jitted ``value_and_grad`` of the
layer's training objective (mean of ``log N(z) + log-det`` over a batch, minus lambda times the
reconstruction error for the self-normalizing layer) with respect to its parameters:

- ``exact``: autodiff through ``slogdet(W)`` (an LU and its transpose: O(D^3));
- ``snf``: the substituted gradient without evaluating the log-det (the paper's training step:
  O(B D^2) matrix products);
- ``snf+value``: the same gradient with the exact log-det value (this package's default, for
  honest training bits/dim), which adds one LU without its backward pass.

The exponent of each is fitted by least squares on log time vs log D over ``D >= --fit-from``.
Compile time is excluded from the medians.
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _timing
from nif_zoo.layers.selfnorm import SelfNormDense

VARIANTS = {
    "exact": dict(gradient="exact"),
    "snf": dict(gradient="selfnorm", exact_log_det=False),
    "snf+value": dict(gradient="selfnorm", exact_log_det=True),
}


def step_fn(module: SelfNormDense, reconstruction_weight: float):
    """``(objective, gradients)`` of one layer on a batch, as a training step needs them."""
    def objective(params, x):
        (z, log_det), sown = module.apply({"params": params}, x, mutable=["losses"])
        log_p = jnp.mean(-0.5 * jnp.sum(z * z, axis=-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
                         + log_det)
        reconstruction = sum(jnp.sum(v) for v in jax.tree.leaves(sown))
        return log_p - reconstruction_weight * reconstruction

    return jax.value_and_grad(objective)


def bench_case(d: int, batch: int, repeats: int, budget_s: float, variants: list[str]) -> dict:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, d)), jnp.float32)
    row: dict = {"D": d, "batch": batch}
    for name in variants:
        module = SelfNormDense(**VARIANTS[name])
        params = jax.jit(module.init)(jax.random.key(0), x)["params"]
        compiled, compile_s = _timing.compile_timed(step_fn(module, 1.0), params, x)
        timing = _timing.measure(lambda c=compiled, p=params: c(p, x), repeats, budget_s=budget_s)
        row[name] = {**timing, "compile_s": compile_s, "flops": _timing.flops(compiled)}
    return row


def fit_exponent(dims: list[int], seconds: list[float]) -> float | None:
    """Slope of log(seconds) against log(D), least squares."""
    if len(dims) < 2:
        return None
    return float(np.polyfit(np.log(dims), np.log(seconds), 1)[0])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="D up to 512, few repeats")
    p.add_argument("--dims", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048, 4096])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--batch", type=int, default=100, help="the paper's batch size")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--budget", type=float, default=20.0,
                   help="seconds of timed runs per case before stopping early (at least 3 runs)")
    p.add_argument("--fit-from", type=int, default=512, help="smallest D in the exponent fit")
    p.add_argument("--output", help="JSON path (default benchmarks/results/snf_cost.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.dims, args.repeats, args.budget, args.fit_from = [64, 128, 256, 512], 3, 2.0, 128

    _timing.warn_if_busy()
    print(f"float32, batch {args.batch}, one D x D layer: value_and_grad of its training objective",
          flush=True)
    rows = []
    for d in args.dims:
        rows.append(bench_case(d, args.batch, args.repeats, args.budget, args.variants))
        print(f"  D={d}: " + ", ".join(f"{v} {1e3 * rows[-1][v]['median_s']:.2f} ms"
                                       for v in args.variants), flush=True)

    fitted = [r for r in rows if r["D"] >= args.fit_from]
    exponents = {v: fit_exponent([r["D"] for r in fitted], [r[v]["median_s"] for r in fitted])
                 for v in args.variants}
    headers = ["D"] + [f"{v} ms" for v in args.variants]
    if "exact" in args.variants and "snf" in args.variants:
        headers.append("exact/snf")
    table = []
    for r in rows:
        line = [r["D"]] + [1e3 * r[v]["median_s"] for v in args.variants]
        if "exact" in args.variants and "snf" in args.variants:
            line.append(r["exact"]["median_s"] / r["snf"]["median_s"])
        table.append(line)
    print(_timing.table(headers, table))
    print(f"fitted exponents (time ~ D^k, D >= {args.fit_from}): "
          + ", ".join(f"{v} {k:.2f}" if k is not None else f"{v} -" for v, k in exponents.items()))
    path = _timing.write_json(_timing.output_path("snf_cost", args.quick, args.output), {
        "benchmark": "snf_cost", "quick": args.quick, "dtype": "float32", "batch": args.batch,
        "machine": _timing.machine(), "rows": rows, "fit_from": args.fit_from,
        "exponents": exponents,
        "note": "median seconds of a jitted value_and_grad of one layer's objective; compile excluded"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
