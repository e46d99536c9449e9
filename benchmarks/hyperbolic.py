"""Test log-likelihood of hyperbolic VAEs and their Euclidean twins: the shape of Bose et al.'s table.

``python -m benchmarks.hyperbolic [--datasets bdp fmnist] [--latents 2 4 6] [--train] [--quick]``:
for each dataset and latent dimension, the Euclidean VAE with an affine-coupling posterior flow,
the hyperbolic VAE without a flow, with TC and with WHC layers; IS log-likelihood (K = 500, nats,
mean and standard error over test points). Models come from ``RUNS/<name>/model`` (trained with
``python -m nif_zoo.hyperbolic.train``, or here with ``--train``). Fashion-MNIST is scored on the
first ``--fmnist-test`` test images (IS with K = 500 on all 10,000 takes ~1 CPU-hour per model).
Writes ``results/hyperbolic.json`` (rows of earlier runs for other settings are kept) and the
Poincare-disk PNGs of the 2-d WHC latents to ``notes/``. Run it with ``taskset -c 0``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nif_zoo
from benchmarks import _timing
from nif_zoo.hyperbolic import bench as vae_bench
from nif_zoo.hyperbolic import config as configs
from nif_zoo.hyperbolic import train
from nif_zoo.hyperbolic.plots import latent_figure

POSTERIORS = {"euclidean": "Euclidean + NC", "wrapped": "H-VAE", "tc": "H-VAE + TC", "whc": "H-VAE + WHC"}
NOTES = Path(__file__).resolve().parent / "notes"


def run_name(dataset: str, posterior: str, latent: int) -> str:
    """Zoo-style names: ``bdp-hvae-whc.d2``, ``bdp-hvae.d2`` (no flow), ``bdp-evae-nc.d2`` (twin)."""
    tag = {"euclidean": "evae-nc", "wrapped": "hvae"}.get(posterior, f"hvae-{posterior}")
    return f"{dataset}-{tag}.d{latent}"


def ensure_trained(runs: Path, dataset: str, posterior: str, latent: int, steps: int | None) -> Path:
    workdir = runs / run_name(dataset, posterior, latent)
    if not (workdir / "model" / "config.json").exists():
        config = configs.for_dataset(dataset, latent, posterior)
        settings = train.TrainConfig(steps=steps or train.DEFAULT_STEPS[dataset])
        print(f"training {workdir.name} for {settings.steps} steps", flush=True)
        train.train_and_evaluate(config, settings, workdir)
    return workdir


def evaluate(workdir: Path, k: int, test_limit: int | None) -> dict:
    """The IS figures of ``nif-zoo bench`` (same draws) with the run's training record."""
    figures = vae_bench.run(nif_zoo.load(str(workdir / "model")), workdir.name, k, test_limit)
    result = json.loads((workdir / "result.json").read_text())
    return {"name": workdir.name, "log_likelihood": figures["log_likelihood"]["mean"],
            "standard_error": figures["log_likelihood"]["stderr"],
            "test_examples": figures["test_examples"], "k": k, "eval_seconds": figures["seconds"],
            "test_elbo": result.get("test_elbo"), "radius": result.get("radius"),
            "train_seconds": result["train_seconds"], "steps": result["step"],
            "steps_per_sec": result["steps_per_sec"]}


def poincare_figure(workdir: Path, output: Path) -> None:
    model = nif_zoo.load(str(workdir / "model"))
    latent_figure(model, f"{workdir.name}: latent means on the Poincare disk").save(output)


def print_table(rows: list[dict], posteriors: list[str]) -> None:
    print(f"\nTest log-likelihood (nats, IS with K = {rows[0]['k']}; mean +- standard error)")
    print("| data | d | " + " | ".join(POSTERIORS[p] for p in posteriors) + " |")
    print("|---|---|" + "---|" * len(posteriors))
    for (dataset, latent) in dict.fromkeys((r["dataset"], r["latent"]) for r in rows):
        cells = []
        for p in posteriors:
            match = [r for r in rows if (r["dataset"], r["latent"], r["posterior"]) == (dataset, latent, p)]
            cells.append(f"{match[0]['log_likelihood']:.2f} +- {match[0]['standard_error']:.2f}"
                         if match else "-")
        print(f"| {dataset} | {latent} | " + " | ".join(cells) + " |")


def merged(output: Path, results: list[dict]) -> list[dict]:
    """``results`` plus the rows of an earlier run for other settings (e.g. the other dataset)."""
    key = lambda r: (r["dataset"], r["latent"], r["posterior"])  # noqa: E731
    earlier = json.loads(output.read_text())["results"] if output.exists() else []
    new = {key(r) for r in results}
    return sorted([r for r in earlier if key(r) not in new] + results, key=key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["bdp", "fmnist"], choices=["bdp", "fmnist"])
    parser.add_argument("--latents", nargs="+", type=int, default=[2, 4, 6])
    parser.add_argument("--posteriors", nargs="+", default=list(POSTERIORS), choices=list(POSTERIORS))
    parser.add_argument("--runs", type=Path, default=Path("/work/runs/hyperbolic"))
    parser.add_argument("--train", action="store_true", help="train the runs that have no model yet")
    parser.add_argument("--steps", type=int, help="training steps (default: train.DEFAULT_STEPS)")
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--fmnist-test", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="bdp, d = 2, 200 steps, K = 50")
    parser.add_argument("--output")
    args = parser.parse_args()
    if args.quick:
        args.datasets, args.latents, args.steps, args.k, args.train = ["bdp"], [2], 200, 50, True
        args.runs = args.runs.with_name(args.runs.name + "-quick")
    output = _timing.output_path("hyperbolic", args.quick, args.output)
    results = []
    for dataset in args.datasets:
        test_limit = args.fmnist_test if dataset == "fmnist" else None
        for latent in args.latents:
            for posterior in args.posteriors:
                workdir = args.runs / run_name(dataset, posterior, latent)
                if args.train:
                    ensure_trained(args.runs, dataset, posterior, latent, args.steps)
                if not (workdir / "model").exists():
                    print(f"skipping {workdir.name}: not trained (pass --train)", flush=True)
                    continue
                row = {"dataset": dataset, "latent": latent, "posterior": posterior,
                       **evaluate(workdir, args.k, test_limit)}
                print(json.dumps(row), flush=True)
                results.append(row)
                if latent == 2 and posterior == "whc" and not args.quick:
                    poincare_figure(workdir, NOTES / f"hyperbolic-{dataset}-poincare.png")
    if not results:
        raise SystemExit(f"no trained models under {args.runs}; pass --train")
    print_table(results, args.posteriors)
    _timing.write_json(output, {"results": merged(output, results), "machine": _timing.machine(), "k": args.k,
                               "fmnist_test_examples": args.fmnist_test})


if __name__ == "__main__":
    main()
