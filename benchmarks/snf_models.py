"""Self Normalizing Flows against their exact-gradient twins, and R against the exact inverse.

``python -m benchmarks.snf_models RUNS_DIR [--quick]`` reads the training workdirs
``RUNS_DIR/{snf,exact}_{dense,cnn,glow}`` (those present; a run still training is read at its
newest checkpoint) and for each twin pair reports:

- test bits/dim on the whole test set (10,000 images, exact log-dets, one dequantisation draw,
  the same draws for both twins) at equal steps: both at their newest common checkpoint;
- bits/dim at equal training time: each run's eval curve (``eval_bits_per_dim`` in
  ``metrics.jsonl``, measured during training on its ``eval_examples``-image test slice) against
  its training wall time, both read at the shorter run's total time by linear interpolation;
- milliseconds per training step: the median over logging intervals (an interval holding an
  evaluation or the compile is an outlier the median skips), and the total wall time;
- for the self-normalizing model: samples at t = 1 through R and through the exact inverse from
  the same latent draws (rows of one PNG in results/), the mean reconstruction error
  ``||x - g_R(f(x))||`` over test images (and with the exact inverse, float32's floor), and the
  mean distance ``||x_R - x_exact||`` between the two inverses' samples. Distances are L2 norms
  of whole images in the model's ``[-1/2, 1/2)`` units (one pixel level of 8-bit data is 1/256).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _timing
from nif_zoo import data as datasets
from nif_zoo import plots, train
from nif_zoo.layers.preprocess import dequantize, quantize_pixels
from nif_zoo.models import FlowModel
from nif_zoo.pretrained import Pretrained
from nif_zoo.writers import read_json_lines

BACKBONES = ("dense", "cnn", "glow")
GRADIENTS = ("snf", "exact")
SHOWN_SAMPLES = 10
BATCH = 500
# Keller et al. 2021, MNIST test -log p in nats (the authors' figures, not ours)
PAPER_NATS = {"dense": {"exact": 947.6, "snf": 947.1}, "cnn": {"exact": 637.4, "snf": 638.6},
              "glow": {"exact": 575.7, "snf": 575.4}}
PAPER_MODELS = {"dense": "2-layer dense flow", "cnn": "9-layer CNN", "glow": "Glow-like model"}
DIFFERENCES = {"dense": "the same architecture",
               "cnn": "smooth leaky ReLUs in place of their learned spline activations",
               "glow": "a 2 x 4 x 32 Glow in place of their 2 x 16 x 512 one"}
MNIST_DIM = 784


def load(workdir: Path, step: int | None = None) -> tuple[Pretrained, int, dict]:
    config, params, step = train.load_workdir(workdir, step)
    return Pretrained(train.model_config(config), params, workdir.name), step, config.to_dict()


def checkpoint_steps(workdir: Path) -> set[int]:
    folder = workdir / "checkpoints"
    return {int(p.name) for p in folder.iterdir() if p.name.isdigit()} if folder.is_dir() else set()


def training_clock(rows: list[dict]) -> dict[int, float]:
    """``{step: wall seconds of training so far}`` at each logged step, summed over resumes."""
    clock, offset, process, last = {}, 0.0, None, 0.0
    for row in rows:
        if "wall_seconds" not in row:
            continue
        start = int(row.get("start_step", 0))
        if process is not None and start != process:
            offset += last
        process, last = start, row["wall_seconds"]
        clock[int(row["step"])] = offset + last
    return clock


def ms_per_step(rows: list[dict]) -> float | None:
    """Median milliseconds per step over the logging intervals of each process."""
    rates, previous = [], None
    for row in rows:
        if "wall_seconds" not in row:
            continue
        if previous is not None and row.get("start_step", 0) == previous.get("start_step", 0):
            rates.append((row["wall_seconds"] - previous["wall_seconds"]) / (row["step"] - previous["step"]))
        previous = row
    return 1e3 * statistics.median(rates) if rates else None


def eval_curve(rows: list[dict], clock: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """``(seconds, eval bits/dim)`` of each evaluation during training."""
    logged = sorted(clock)
    evals = [(r["step"], r["eval_bits_per_dim"]) for r in rows if "eval_bits_per_dim" in r]
    steps = np.asarray([s for s, _ in evals], float)
    seconds = np.interp(steps, logged, [clock[s] for s in logged]) if logged else steps * np.nan
    return seconds, np.asarray([b for _, b in evals], float)


def run_log(workdir: Path) -> dict:
    rows = read_json_lines(workdir / "metrics.jsonl")
    clock = training_clock(rows)
    seconds, bpd = eval_curve(rows, clock)
    steps = max(clock) if clock else 0
    return {"steps_logged": steps, "wall_minutes": clock[steps] / 60 if clock else None,
            "ms_per_step_median": ms_per_step(rows),
            "ms_per_step_overall": 1e3 * clock[steps] / steps if clock else None,
            "curve_seconds": seconds.tolist(), "curve_eval_bits_per_dim": bpd.tolist()}


def at_equal_time(logs: dict[str, dict]) -> dict | None:
    """Both eval curves read at the shorter run's total time (interpolated)."""
    if len(logs) < 2 or any(not log["curve_seconds"] for log in logs.values()):
        return None
    seconds = min(log["curve_seconds"][-1] for log in logs.values())
    values = {}
    for name, log in logs.items():
        xs, ys = log["curve_seconds"], log["curve_eval_bits_per_dim"]
        values[name] = float(np.interp(seconds, xs, ys)) if seconds >= xs[0] else None
    eval_images = {log["eval_images"] for log in logs.values()}
    return {"minutes": seconds / 60, "eval_images": eval_images.pop() if len(eval_images) == 1 else None,
            **values}


def test_bits_per_dim(model: Pretrained, images: np.ndarray, seed: int) -> dict:
    bpd = train.eval_bits_per_dim(FlowModel(model.config), model.params, images, jax.random.key(seed),
                                  batch_size=BATCH)
    mean = float(bpd.mean())
    return {"mean": mean, "stderr": float(bpd.std(ddof=1) / math.sqrt(len(bpd))), "images": len(bpd),
            "draws": 1, "nats": mean * model.config.dim * math.log(2.0)}


def exact_twin(model: Pretrained) -> Pretrained:
    """The same weights inverted by solves with ``W`` instead of through ``R``."""
    return Pretrained(model.config.replace(selfnorm_inverse="exact"), model.params, model.name)


def reconstruction_errors(model: Pretrained, images: np.ndarray) -> dict:
    """Mean ``||x - g(f(x))||`` over test images at their cell midpoints, through R and exactly."""
    exact = exact_twin(model)
    through_r, solved = [], []
    for batch in datasets.sequential_batches(images, BATCH):
        x = dequantize(None, quantize_pixels(batch, model.config.n_bits), model.config.n_bits)[0]
        through_r.append(np.linalg.norm((model.project(x) - x).reshape(len(x), -1), axis=1))
        solved.append(np.linalg.norm((exact.project(x) - x).reshape(len(x), -1), axis=1))
    return {"images": len(images), "through_r_mean": float(np.concatenate(through_r).mean()),
            "exact_inverse_mean": float(np.concatenate(solved).mean())}


def compare_samples(model: Pretrained, n: int, seed: int) -> tuple[dict, list[np.ndarray]]:
    """Samples (t = 1) of both inverses from the same latents: their distance and PNG rows."""
    key = jax.random.key(seed)
    through_r = model.sample_float(key, n, t=1.0)
    solved = exact_twin(model).sample_float(key, n, t=1.0)
    distance = np.linalg.norm(np.asarray(through_r - solved).reshape(n, -1), axis=1)
    difference = jnp.clip(10 * jnp.abs(through_r - solved)[:SHOWN_SAMPLES], 0, 1)
    rows = [model.to_images(through_r[:SHOWN_SAMPLES]), model.to_images(solved[:SHOWN_SAMPLES]),
            np.asarray(255 * difference).astype(np.uint8)]
    return {"samples": n, "distance_mean": float(distance.mean()),
            "distance_max": float(distance.max())}, rows


def compare_pair(runs: Path, backbone: str, args, test_images: np.ndarray) -> tuple[dict, list]:
    candidates = {g: runs / f"{g}_{backbone}" for g in GRADIENTS}
    workdirs = {g: w for g, w in candidates.items() if checkpoint_steps(w)}
    common = set.intersection(*(checkpoint_steps(w) for w in workdirs.values())) if workdirs else set()
    step = max(common) if len(workdirs) == 2 and common else None
    result, png_rows = {"equal_steps": {}, "timing": {}}, []
    for gradient, workdir in workdirs.items():
        started = time.perf_counter()
        model, at, config = load(workdir, step)
        result["equal_steps"][gradient] = {"step": at, **test_bits_per_dim(model, test_images, args.seed)}
        result["timing"][gradient] = {**run_log(workdir), "eval_images": config["eval_examples"]}
        if model.config.linear == "selfnorm":
            result["inverses"] = reconstruction_errors(model, test_images[:args.reconstruction_images])
            result["inverses"]["samples"], png_rows = compare_samples(model, args.samples, args.seed)
        print(f"  {backbone}/{gradient}: step {at}, {time.perf_counter() - started:.0f} s", flush=True)
    result["equal_time"] = at_equal_time(result["timing"])
    return result, png_rows


def table_rows(pairs: dict) -> list[list]:
    rows = []
    for backbone, pair in pairs.items():
        for gradient, measured in pair["equal_steps"].items():
            timing, same_time = pair["timing"][gradient], pair["equal_time"] or {}
            inverses = pair.get("inverses", {}) if gradient == "snf" else {}
            rows.append([f"{gradient} {backbone}", measured["step"], measured["mean"], measured["nats"],
                         timing["ms_per_step_median"], timing["wall_minutes"], same_time.get(gradient),
                         inverses.get("through_r_mean"), inverses.get("samples", {}).get("distance_mean")])
    return rows


def zoo_name(gradient: str, backbone: str) -> str:
    return f"fmnist8-{gradient}-{backbone}.small"


def _row(label: str, values: list[str]) -> str:
    return f"| {label} | " + " | ".join(values) + " |"


def _number(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def comparison_table(backbone: str, pair: dict) -> list[str]:
    """Our figures for both twins, and the paper's MNIST figures for the same pair."""
    present = [g for g in GRADIENTS if g in pair["equal_steps"]]
    steps, timing, same = pair["equal_steps"], pair["timing"], pair["equal_time"] or {}
    paper = PAPER_NATS[backbone]
    kind = {"snf": "self-normalizing", "exact": "exact gradient"}
    lines = [_row("", [f"`{zoo_name(g, backbone)}` ({kind[g]})" for g in present]),
             "|---|" + "---|" * len(present),
             _row("training steps", [str(steps[g]["step"]) for g in present]),
             _row(f"test bits/dim (all {steps[present[0]]['images']:,} test images, one dequantisation "
                  "draw, exact log-det)",
                  [f"{_number(steps[g]['mean'])} +/- {_number(steps[g]['stderr'])}" for g in present]),
             _row("the same as -log p in nats per image (bits/dim x 784 ln 2)",
                  [_number(steps[g]["nats"], 1) for g in present])]
    if same:
        lines.append(_row(f"eval-slice bits/dim at equal training time ({same['minutes']:.1f} min, "
                          f"{same['eval_images']} test images, interpolated)",
                          [_number(same.get(g)) for g in present]))
    lines += [_row("ms per training step (median over logging intervals)",
                   [_number(timing[g]["ms_per_step_median"], 0) for g in present]),
              _row("training wall time, minutes (evaluations included)",
                   [_number(timing[g]["wall_minutes"], 1) for g in present]),
              _row(f"paper, MNIST: -log p in nats (bits/dim) of its {PAPER_MODELS[backbone]}",
                   [f"{paper[g]} ({paper[g] / (MNIST_DIM * math.log(2.0)):.3f})" for g in present])]
    return lines


def inverse_paragraph(inverses: dict) -> list[str]:
    samples = inverses["samples"]
    return [
        "## Sampling through R or through the exact inverse", "",
        f"Mean reconstruction error ||x - g_R(f(x))|| over {inverses['images']:,} test images (pixel "
        f"cell midpoints, whole images in [-1/2, 1/2) units): {inverses['through_r_mean']:.4g} through "
        f"the learned inverses R, {inverses['exact_inverse_mean']:.2g} through the exact inverse "
        f"(float32's floor). Samples at t = 1 from the same latents differ between the two inverses "
        f"by {samples['distance_mean']:.4g} on average (largest {samples['distance_max']:.4g}, "
        f"{samples['samples']} samples); `inverse_r_vs_exact.png` shows ten side by side. For scale, "
        "one 8-bit pixel level is 1/256 = 0.0039, and an image whose 784 pixels are each one level "
        "off is 0.11 away. Load with `selfnorm_inverse='exact'` in the architecture to sample "
        "through solves with W."]


def notes_markdown(backbone: str, gradient: str, pair: dict, machine: dict, command: str) -> str:
    """A zoo card's notes: the model beside its twin and the paper's figures, then how it was made."""
    lines = ["## Beside its twin and the paper", "",
             f"Measured by `python -m benchmarks.snf_models RUNS_DIR` "
             f"(`benchmarks/results/snf_models.json`) on {machine['time'][:10]}.", "",
             *comparison_table(backbone, pair), "",
             "The paper's figures are the authors' on MNIST (Keller et al. 2021, long GPU trainings); "
             f"ours are on Fashion-MNIST, a harder dataset, after a short CPU run, with "
             f"{DIFFERENCES[backbone]}: compare the gap between the twins, never the absolute values. "
             "The equal-time row reads both runs' evaluation curves at the shorter run's total time."]
    if gradient == "snf" and "inverses" in pair:
        lines += ["", *inverse_paragraph(pair["inverses"])]
    timing = pair["timing"][gradient]
    lines += ["", "## Training run", "",
              f"`{command}`: {timing['steps_logged']} steps in {timing['wall_minutes']:.1f} minutes "
              f"({timing['ms_per_step_median']:.0f} ms per step) on one core of a "
              f"{machine['cores']}-core {machine['cpu']} machine (CPU, jax {machine['jax']}), other jobs "
              "running on the other cores."]
    return "\n".join(lines) + "\n"


def write_notes(pairs: dict, folder: Path, machine: dict) -> list[Path]:
    written = []
    for backbone, pair in pairs.items():
        for gradient in pair["equal_steps"]:
            name = zoo_name(gradient, backbone)
            command = (f"nif-zoo train fmnist8_{gradient}_{backbone} --workdir workdirs/{name} "
                       "--set eval_every=500")
            path = folder / f"{name}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(notes_markdown(backbone, gradient, pair, machine, command))
            written.append(path)
    return written


HEADERS = ["model", "step", "test bpd", "nats", "ms/step", "train min", "bpd at equal time",
           "||x - g_R f(x)||", "||x_R - x_exact||"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, help="folder holding snf_dense/, exact_dense/, ...")
    p.add_argument("--quick", action="store_true", help="500 test images, 20 samples")
    p.add_argument("--test-images", type=int, default=10_000)
    p.add_argument("--reconstruction-images", type=int, default=10_000)
    p.add_argument("--samples", type=int, default=100, help="samples compared between the inverses")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="JSON path (default results/snf_models.json)")
    p.add_argument("--notes", type=Path, help="also write each model's zoo-card notes into this folder")
    args = p.parse_args(argv)
    if args.quick:
        args.test_images, args.reconstruction_images, args.samples = 500, 500, 20

    _timing.warn_if_busy()
    test_images = datasets.load_dataset("fmnist", "test", (28, 28, 1))[0][:args.test_images]
    pairs, png_rows, png_labels = {}, [], []
    for backbone in BACKBONES:
        if not any(checkpoint_steps(args.runs / f"{g}_{backbone}") for g in GRADIENTS):
            continue
        pairs[backbone], rows = compare_pair(args.runs, backbone, args, test_images)
        png_rows += rows
        png_labels += [f"{backbone}: through R", f"{backbone}: exact", f"{backbone}: |diff| x10"][:len(rows)]

    output = _timing.output_path("snf_models", args.quick, args.output)
    png = output.with_name(f"{output.stem}_samples.png")
    if png_rows:
        plots.save_png(plots.sweep_grid(png_rows, png_labels, "SNF samples (t=1), same latents"), png)
    print(_timing.table(HEADERS, table_rows(pairs)))
    for backbone, pair in pairs.items():
        if pair["equal_time"]:
            print(f"{backbone}: equal time = {pair['equal_time']['minutes']:.1f} min of training (the "
                  f"shorter run's), eval-curve bits/dim on the {pair['equal_time']['eval_images']}-image "
                  "test slice, interpolated")
    path = _timing.write_json(output, {
        "benchmark": "snf_models", "quick": args.quick, "runs": str(args.runs.resolve()),
        "machine": _timing.machine(), "test_images": len(test_images), "seed": args.seed,
        "samples_png": str(png.relative_to(Path.cwd())) if png_rows and png.is_relative_to(Path.cwd())
        else str(png) if png_rows else None, "pairs": pairs,
        "note": "test bpd: full test set, exact log-dets, one dequantisation draw per image (same for "
                "both twins); equal time: eval curve of metrics.jsonl (eval slice) interpolated at the "
                "shorter run's wall time; distances: L2 norms of whole images in [-1/2, 1/2) units"})
    print(f"wrote {path}" + (f" and {png}" if png_rows else ""))
    if args.notes:
        for note in write_notes(pairs, args.notes, _timing.machine()):
            print(f"wrote {note}")


if __name__ == "__main__":
    main()
