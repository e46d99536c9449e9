"""Test log-likelihood of hyperbolic VAEs and their Euclidean twins: the shape of Bose et al.'s table.

``python -m benchmarks.hyperbolic [--datasets bdp fmnist] [--latents 2 4 6] [--train] [--quick]``:
for each dataset and latent dimension, the Euclidean VAE with an affine-coupling posterior flow,
the hyperbolic VAE without a flow, with TC and with WHC layers; IS log-likelihood (K = 500, nats,
mean and standard error over all test points) and each model's paired difference from the
Euclidean twin on the same points (mean and standard error of the per-point differences). Models
are the zoo entries of the same names, or ``RUNS/<name>/model`` when ``--runs`` holds that run
(trained with ``python -m nif_zoo.hyperbolic.train``, or here with ``--train``). Writes
``results/hyperbolic.json`` (rows of earlier runs for other settings are kept), each model's
``nif-zoo bench`` JSON ``results/<name>.json`` (the same draws, so the same figures) and the
Poincare-disk PNGs of the 2-d WHC latents to ``notes/``. Run it with ``taskset -c 0``.

``--train --seed S`` (S > 0) trains every model again with another seed into ``RUNS/<name>.seedS``
and writes ``results/hyperbolic.seedS.json`` only; ``--seed-summary`` prints the mean and spread
over the seeds found (``results/hyperbolic_seeds.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import nif_zoo
from benchmarks import _timing
from nif_zoo import bench
from nif_zoo.hyperbolic import bench as vae_bench
from nif_zoo.hyperbolic import config as configs
from nif_zoo.hyperbolic import train
from nif_zoo.hyperbolic.plots import latent_figure

POSTERIORS = {"euclidean": "Euclidean + NC", "wrapped": "H-VAE", "tc": "H-VAE + TC", "whc": "H-VAE + WHC"}
NOTES = Path(__file__).resolve().parent / "notes"
RESULTS = _timing.RESULTS


def run_name(dataset: str, posterior: str, latent: int) -> str:
    """Zoo-style names: ``bdp-hvae-whc.d2``, ``bdp-hvae.d2`` (no flow), ``bdp-evae-nc.d2`` (twin)."""
    tag = {"euclidean": "evae-nc", "wrapped": "hvae"}.get(posterior, f"hvae-{posterior}")
    return f"{dataset}-{tag}.d{latent}"


def ensure_trained(workdir: Path, dataset: str, posterior: str, latent: int, steps: int | None,
                   seed: int) -> Path:
    if not (workdir / "model" / "config.json").exists():
        config = configs.for_dataset(dataset, latent, posterior)
        settings = train.TrainConfig(steps=steps or train.DEFAULT_STEPS[dataset], seed=seed)
        print(f"training {workdir.name} for {settings.steps} steps", flush=True)
        train.train_and_evaluate(config, settings, workdir)
    return workdir


def evaluate(model, name: str, k: int, test_limit: int | None, workdir: Path | None,
             bench_output: Path | None) -> tuple[dict, np.ndarray]:
    """The IS figures of ``nif-zoo bench`` (same draws; written to ``bench_output`` as that command
    writes them), with the run's training record when its workdir is here; also the per-point
    log-likelihoods.
    """
    figures = vae_bench.run(model, name, k, test_limit, keep_points=True)
    points = figures.pop("points")
    if bench_output is not None:
        bench.write(figures, bench_output)
    row = {"name": name, "log_likelihood": figures["log_likelihood"], "test_elbo": figures["elbo"],
           "radius": figures["radius"] if np.isfinite(figures["radius"]) else None,
           "test_examples": figures["test_examples"], "k": k, "eval_seconds": figures["seconds"]}
    if workdir is not None:
        result = json.loads((workdir / "result.json").read_text())
        row.update(train_seconds=result["train_seconds"], steps=result["step"],
                   steps_per_sec=result["steps_per_sec"])
    return row, points


def paired_differences(rows: list[dict], points: dict[str, np.ndarray]) -> None:
    """Adds ``minus_euclidean`` (mean and standard error of per-point differences) to each row
    whose Euclidean twin was scored in the same run.
    """
    for row in rows:
        twin = run_name(row["dataset"], "euclidean", row["latent"])
        if row["posterior"] != "euclidean" and twin in points:
            diff = points[row["name"]] - points[twin]
            row["minus_euclidean"] = {"mean": float(diff.mean()),
                                      "stderr": float(diff.std(ddof=1) / np.sqrt(len(diff)))}


def poincare_figure(model, name: str, output: Path) -> None:
    latent_figure(model, f"{name}: latent means on the Poincare disk").save(output)


def print_table(rows: list[dict], posteriors: list[str], field: str, title: str) -> None:
    print(f"\n{title}")
    print("| data | d | " + " | ".join(POSTERIORS[p] for p in posteriors) + " |")
    print("|---|---|" + "---|" * len(posteriors))
    for (dataset, latent) in dict.fromkeys((r["dataset"], r["latent"]) for r in rows):
        cells = []
        for p in posteriors:
            match = [r for r in rows if (r["dataset"], r["latent"], r["posterior"]) == (dataset, latent, p)]
            value = match[0].get(field) if match else None
            spread = value and value.get("stderr", value.get("std"))
            cells.append(f"{value['mean']:.2f} +- {spread:.2f}" if value else "-")
        print(f"| {dataset} | {latent} | " + " | ".join(cells) + " |")


def print_seed_summary(posteriors: list[str]) -> None:
    """Mean and spread over training seeds of each cell's log-likelihood and paired difference."""
    runs = [json.loads(path.read_text())["results"]
            for path in [RESULTS / "hyperbolic.json", *sorted(RESULTS.glob("hyperbolic.seed*.json"))]]
    cells: dict[tuple, dict[str, list[float]]] = {}
    for row in (r for rows in runs for r in rows):
        cell = cells.setdefault((row["dataset"], row["latent"], row["posterior"]), {"ll": [], "diff": []})
        cell["ll"].append(row["log_likelihood"]["mean"])
        if "minus_euclidean" in row:
            cell["diff"].append(row["minus_euclidean"]["mean"])
    summary = []
    for (dataset, latent, posterior), cell in sorted(cells.items()):
        summary.append({"dataset": dataset, "latent": latent, "posterior": posterior,
                        "seeds": len(cell["ll"]),
                        **{f: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1))}
                           for f, v in (("log_likelihood", cell["ll"]), ("minus_euclidean", cell["diff"]))
                           if len(v) > 1}})
    seeds = max(r["seeds"] for r in summary)
    print_table(summary, posteriors, "log_likelihood",
                f"Test log-likelihood over {seeds} training seeds (nats; mean +- standard deviation)")
    print_table(summary, posteriors, "minus_euclidean",
                f"Paired difference from Euclidean + NC over {seeds} seeds (mean +- standard deviation)")
    _timing.write_json(RESULTS / "hyperbolic_seeds.json", {"results": summary, "runs": len(runs)})


def merged(output: Path, results: list[dict]) -> list[dict]:
    """``results`` plus the rows of an earlier run for other settings (e.g. the other dataset); a
    re-scored row keeps the training record of its earlier row when its workdir is gone.
    """
    key = lambda r: (r["dataset"], r["latent"], r["posterior"])  # noqa: E731
    earlier = {key(r): r for r in json.loads(output.read_text())["results"]} if output.exists() else {}
    for row in results:
        previous = earlier.get(key(row), {})
        for field in ("train_seconds", "steps", "steps_per_sec"):
            if field not in row and field in previous:
                row[field] = previous[field]
        earlier[key(row)] = row
    return sorted(earlier.values(), key=key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["bdp", "fmnist"], choices=["bdp", "fmnist"])
    parser.add_argument("--latents", nargs="+", type=int, default=[2, 4, 6])
    parser.add_argument("--posteriors", nargs="+", default=list(POSTERIORS), choices=list(POSTERIORS))
    parser.add_argument("--runs", type=Path, default=Path("workdirs"),
                        help="training workdirs; a model without one here comes from the zoo")
    parser.add_argument("--train", action="store_true", help="train the runs that have no model yet")
    parser.add_argument("--steps", type=int, help="training steps (default: train.DEFAULT_STEPS)")
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--test-limit", type=int, default=0, help="score the first N test points (0: all)")
    parser.add_argument("--quick", action="store_true", help="bdp, d = 2, 200 steps, K = 50")
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed; seed 0 are the zoo entries, others train into NAME.seedS")
    parser.add_argument("--seed-summary", action="store_true",
                        help="only summarise results/hyperbolic.json and hyperbolic.seed*.json")
    parser.add_argument("--output")
    args = parser.parse_args()
    if args.quick:
        args.datasets, args.latents, args.steps, args.k, args.train = ["bdp"], [2], 200, 50, True
        args.runs = args.runs.with_name(args.runs.name + "-quick")
    if args.seed_summary:
        print_seed_summary(args.posteriors)
        return
    output = _timing.output_path(f"hyperbolic{f'.seed{args.seed}' if args.seed else ''}", args.quick,
                                 args.output)
    results, points = [], {}
    for dataset in args.datasets:
        for latent in args.latents:
            for posterior in args.posteriors:
                name = run_name(dataset, posterior, latent)
                workdir = args.runs / (name if args.seed == 0 else f"{name}.seed{args.seed}")
                if args.train:
                    ensure_trained(workdir, dataset, posterior, latent, args.steps, args.seed)
                local = (workdir / "model").exists()
                if not local and args.seed != 0:
                    raise SystemExit(f"{workdir} has no model: the zoo holds seed 0 only; pass --train")
                model = nif_zoo.load(str(workdir / "model") if local else name)
                zoo_figures = not args.quick and args.seed == 0
                row, points[name] = evaluate(model, name, args.k, args.test_limit,
                                             workdir if local else None,
                                             RESULTS / f"{name}.json" if zoo_figures else None)
                row = {"dataset": dataset, "latent": latent, "posterior": posterior, "seed": args.seed,
                       **row}
                print(json.dumps(row), flush=True)
                results.append(row)
                if latent == 2 and posterior == "whc" and zoo_figures:
                    poincare_figure(model, name, NOTES / f"hyperbolic-{dataset}-poincare.png")
    paired_differences(results, points)
    print_table(results, args.posteriors, "log_likelihood",
                f"Test log-likelihood (nats, IS with K = {args.k}; mean +- standard error)")
    print_table(results, args.posteriors, "minus_euclidean",
                "Paired difference from Euclidean + NC (nats; mean +- standard error over test points)")
    _timing.write_json(output, {"results": merged(output, results), "machine": _timing.machine(),
                                "k": args.k, "test_limit": args.test_limit})


if __name__ == "__main__":
    main()
