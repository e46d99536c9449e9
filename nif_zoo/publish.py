"""From a training workdir to a published zoo entry: mirror folder, figures, card, manifest."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from nif_zoo import cards, evaluate, hub, plots, registry
from nif_zoo import data as datasets
from nif_zoo.config import ModelConfig
from nif_zoo.pretrained import Pretrained
from nif_zoo.train import load_workdir
from nif_zoo.writers import read_json_lines

ZOO_DIR = "zoo"
TEMPERATURES = (0.0, 0.25, 0.5, 0.7, 0.85, 1.0)


def model_from_workdir(workdir: str | Path, name: str) -> tuple[Pretrained, int, dict]:
    config, params, step = load_workdir(workdir)
    model_config = ModelConfig.from_dict(config.model.to_dict())
    return Pretrained(model_config, params, name, data_spec(model_config)), step, config.to_dict()


def data_spec(config: ModelConfig) -> dict:
    return {"dataset": "fashion_mnist", "image_shape": list(config.image_shape),
            "n_bits": config.n_bits, "split": "standard 60k/10k",
            "preprocessing": f"quantise to {config.n_bits} bits, uniform dequantisation, "
                             f"logit with lambda {config.logit_lambda}"}


def figures(model: Pretrained, workdir: Path, out: Path, bench: dict | None, step: int,
            seed: int = 0) -> dict:
    """Writes the card's PNGs into ``out``; returns {file name: path}."""
    key = jax.random.key(seed)
    written = {}
    nif = model.config.head != "normal"
    rows = [model.sample(key, 10, t=1.0, s=s) for s in ((0.0, 1.0) if nif else (1.0,))]
    labels = [f"t=1 s={s:g}" for s in ((0.0, 1.0) if nif else (1.0,))]
    written["samples.png"] = plots.sweep_grid(rows, labels, f"{model.name}: samples")
    rows = [model.sample(key, 10, t=t, s=0.0 if nif else 1.0) for t in TEMPERATURES]
    written["temperature_sweep.png"] = plots.sweep_grid(
        rows, [f"t={t:g}" for t in TEMPERATURES], f"{model.name}: temperature sweep"
        + (" (s=0)" if nif else ""))
    if nif:
        s_grid = evaluate.s_values()
        rows = [model.sample(key, 10, t=1.0, s=s) for s in s_grid]
        written["s_sweep.png"] = plots.sweep_grid(rows, [f"s={s:g}" for s in s_grid],
                                                  f"{model.name}: manifold-noise sweep (t=1)")
        fd = (bench or {}).get("frechet_distance", {}).get("held_out_by_s")
        if fd:
            xs = [float(s) for s in fd]
            written["fd_vs_s.png"] = plots.line_plot(
                {"FD (held-out train slice)": (xs, [fd[k] for k in fd])},
                f"{model.name}: FD in classifier features vs s", "s", "FD")
    originals = datasets.load_fashion_mnist("test")[0][:10]
    rows = [quantized(originals, model.config.n_bits), model.to_images(model.project(originals))]
    written["reconstructions.png"] = plots.sweep_grid(
        rows, ["test image", "projection" if nif else "g(f(x))"],
        f"{model.name}: " + ("encode then project onto the manifold" if nif else "encode then decode"))
    if model.config.linear == "selfnorm":
        exact = Pretrained(model.config.replace(selfnorm_inverse="exact"), model.params, model.name)
        rows = [model.sample(key, 10, t=1.0), exact.sample(key, 10, t=1.0)]
        written["inverse_r_vs_exact.png"] = plots.sweep_grid(
            rows, ["through R", "exact inverse"], f"{model.name}: samples (t=1), same latents")
    curve = [r for r in read_json_lines(Path(workdir) / "metrics.jsonl") if r["step"] <= step]
    train = [(r["step"], r["bits_per_dim"]) for r in curve if "bits_per_dim" in r]
    test = [(r["step"], r["eval_bits_per_dim"]) for r in curve if "eval_bits_per_dim" in r]
    if train:
        series = {"train (batch mean)": tuple(zip(*train, strict=True))}
        if test:
            series["test slice"] = tuple(zip(*test, strict=True))
        written["training_curve.png"] = plots.line_plot(series, f"{model.name}: training curve",
                                                        "step", "bits/dim")
    paths = {}
    for file_name, image in written.items():
        plots.save_png(image, out / file_name)
        paths[file_name] = out / file_name
    return paths


def quantized(images: np.ndarray, n_bits: int) -> np.ndarray:
    """uint8 images as the model sees them: n-bit values mapped back to 0..255."""
    return datasets.to_uint8(datasets.quantize(images, n_bits), n_bits)


def results_markdown(name: str, bench: dict | None, summary: dict) -> str:
    """The card's results section, written from the bench JSON and the training log."""
    lines = ["## Results and training run", ""]
    if summary:
        lines.append(f"Trained for {summary['steps']} steps ({summary['wall_minutes']} minutes "
                     f"of wall time); last test-slice bits/dim during training "
                     f"{summary['test_slice_bits_per_dim']}. The training curve is "
                     "`training_curve.png`.")
    if bench:
        bpd, fd, probe = bench["bits_per_dim"], bench["frechet_distance"], bench["linear_probe"]
        lines += ["", f"Measured by `nif-zoo bench {name}` on {bench['machine']} in "
                      f"{bench['seconds']:.0f} s ({bench['data']}):", "",
                  "| figure | value |", "| --- | --- |",
                  f"| test bits/dim, s = 1 ({bpd['images']} images, {bpd['draws']} "
                  f"dequantisation draws) | {bpd['mean']:.4f} +/- {bpd['stderr']:.4f} |",
                  f"| FD (classifier features, t = 1, s = 1, test set) | {fd['test_at_s1']:.2f} |"]
        if "best_s" in fd:
            lines.append(f"| FD at the best s = {fd['best_s']:g} (chosen on a held-out train "
                         f"slice) | {fd['test_at_best_s']:.2f} |")
        lines += [f"| linear probe on the {probe['latent_dim']}-d latent | "
                  f"{probe['latent_accuracy']:.4f} |",
                  f"| linear probe on pixels | {probe['pixel_accuracy']:.4f} |", "",
                  "FD is the Frechet distance in the penultimate features of a Fashion-MNIST "
                  f"classifier shipped in `zoo/fmnist-classifier` (test accuracy "
                  f"{bench['fd_feature_net'].get('test_accuracy', float('nan')):.4f} on 3-bit "
                  "images), between 10,000 samples and real images: not Inception FID, and not "
                  "comparable with the paper's FID."]
    return "\n".join(lines) if len(lines) > 2 else ""


def metrics_from_bench(bench: dict) -> dict[str, float]:
    """The flat figures the manifest and card carry."""
    m = {"test_bits_per_dim": bench["bits_per_dim"]["mean"],
         "test_bits_per_dim_stderr": bench["bits_per_dim"]["stderr"]}
    fd = bench["frechet_distance"]
    m["fd_test_s1"] = fd["test_at_s1"]
    if "best_s" in fd:
        m["fd_test_best_s"] = fd["test_at_best_s"]
        m["best_s"] = fd["best_s"]
    probe = bench["linear_probe"]
    m["probe_accuracy_latent"] = probe["latent_accuracy"]
    m["probe_accuracy_pixels"] = probe["pixel_accuracy"]
    return {k: float(v) for k, v in m.items() if v == v}  # drop NaN (one draw: no stderr)


def publish(workdir: str | Path, name: str, bench_json: str | Path | None = None,
            description: str = "", notes: str = "", train_config: str = "",
            push_repo: str | None = None) -> Path:
    """Writes ``zoo/NAME`` (the Hub layout), its card and manifest entry; optionally pushes."""
    workdir = Path(workdir)
    model, step, train_cfg = model_from_workdir(workdir, name)
    bench = json.loads(Path(bench_json).read_text()) if bench_json else None
    root = registry.manifest_path().parent
    folder = root / ZOO_DIR / name
    previous = previous_entry(name)
    entry = {
        "status": "published",
        "description": description or previous.get("description") or f"{name}, trained at step {step}",
        "architecture": model.config.to_dict(), "data": model.data,
        "hf_repo": previous.get("hf_repo", f"nif-zoo/{name}"), "revision": None,
        "mirror": f"{ZOO_DIR}/{name}",
        "metrics": metrics_from_bench(bench) if bench else {},
        "metrics_command": f"nif-zoo bench {name}" if bench else None,
        "card": f"model_cards/{name}.md",
        "train_config": train_config or previous.get("train_config", "nif_zoo/configs/"),
    }
    notes = "\n\n".join(part for part in (results_markdown(name, bench, training_summary(workdir, step)),
                                             notes) if part)
    if notes:
        entry["notes"] = notes
    return write_entry(name, entry, model, folder,
                       lambda out: figures(model, workdir, out, bench, step), push_repo)


def previous_entry(name: str) -> dict:
    """The manifest entry ``name`` has now ({} for a new name): publishing again keeps its texts."""
    try:
        return registry.get_entry(name)
    except registry.UnknownModelError:
        return {}


def write_entry(name: str, entry: dict, model, folder: Path,
                make_figures: Callable[[Path], dict[str, Path]], push_repo: str | None) -> Path:
    """Saves ``model`` with its figures and card to ``folder``, then the card and manifest entry;
    pushes first when ``push_repo`` is given (the entry then pins the upload's commit).
    """
    with tempfile.TemporaryDirectory() as tmp:
        pngs = make_figures(Path(tmp))
        entry["files"] = {f: {"size": 0, "sha256": "0" * 64} for f in pngs}  # names for the card
        model.save_pretrained(folder, cards.render_card(name, entry), pngs)
    entry["files"] = hub.describe_folder(folder)
    if push_repo:
        entry["hf_repo"] = push_repo
        entry["revision"] = hub.push_folder(folder, push_repo)
    cards.save_entry_with_card(name, entry)
    if cards.render_card(name, entry) != (folder / "README.md").read_text():
        raise RuntimeError("the card in the mirror folder differs from model_cards/: re-run publish")
    return folder


def training_summary(workdir: str | Path, up_to_step: int | None = None) -> dict:
    """Steps, wall time and throughput of a run, read from its metrics log.

    Every process of a run (one more after each resume) logs its start step and its seconds
    since it started; the run's wall time is the sum over processes.
    """
    rows = [r for r in read_json_lines(Path(workdir) / "metrics.jsonl")
            if up_to_step is None or r["step"] <= up_to_step]
    logged = [r for r in rows if "steps_per_sec" in r]
    if not logged:
        return {}
    last_by_process: dict[int, dict] = {}
    for row in logged:
        last_by_process[int(row.get("start_step", 0))] = row
    seconds = sum(r.get("wall_seconds", (r["step"] - start) / r["steps_per_sec"])
                  for start, r in last_by_process.items())
    test = [r["eval_bits_per_dim"] for r in rows if "eval_bits_per_dim" in r]
    return {"steps": int(logged[-1]["step"]), "wall_minutes": round(seconds / 60, 1),
            "images_per_sec": round(logged[-1]["images_per_sec"], 1)
            if "images_per_sec" in logged[-1] else None,
            "test_slice_bits_per_dim": round(test[-1], 4) if test else None}
