"""From a hyperbolic training workdir (``python -m nif_zoo.hyperbolic.train``) to a zoo entry.

Same contract as ``nif_zoo.publish.publish``: ``zoo/NAME`` in the Hub layout, the card in
``model_cards/`` and the manifest entry, optionally pushed; the figures a card shows are made here.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from nif_zoo import hub, plots, registry
from nif_zoo.cards import render_card, save_entry_with_card
from nif_zoo.hyperbolic import bench as vae_bench
from nif_zoo.hyperbolic import data
from nif_zoo.hyperbolic.cards import PAPER_ROW, latent_description
from nif_zoo.hyperbolic.plots import latent_figure
from nif_zoo.hyperbolic.pretrained import PretrainedVAE
from nif_zoo.pretrained import CARD_FILE, CONFIG_FILE, load, replace_card
from nif_zoo.publish import previous_entry, write_entry
from nif_zoo.writers import read_json_lines

ZOO_DIR = "zoo"
BENCH_PARAGRAPH_START, TRAINING_PARAGRAPH_START = "`nif-zoo bench`", "Trained for"
TRAIN_SCRIPT = "nif_zoo/hyperbolic/train.py"


def is_vae_workdir(workdir: str | Path) -> bool:
    """True for a workdir of the hyperbolic trainer (its saved model says ``kind: hvae``)."""
    path = Path(workdir) / "model" / CONFIG_FILE
    return path.is_file() and json.loads(path.read_text()).get("model", {}).get("kind") == "hvae"


def model_from_workdir(workdir: str | Path, name: str) -> PretrainedVAE:
    folder = Path(workdir) / "model"
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{workdir} has no finished model ({folder} is missing): finish the "
                                "run with the same training command first")
    model = load(str(folder))
    model.name = name
    return model


def figures(model: PretrainedVAE, workdir: Path, out: Path) -> dict[str, Path]:
    """Writes the card's PNGs into ``out``; returns {file name: path}."""
    written = {}
    if model.config.hyperbolic and model.config.latent == 2:
        written["poincare_disk.png"] = latent_figure(model, f"{model.name}: latent means")
    if model.config.dataset == "fmnist":
        written["samples.png"] = plots.sweep_grid(
            [as_images(model.sample(jax.random.key(row), 10)) for row in range(3)],
            ["prior draws"] * 3, f"{model.name}: decoder means of prior samples")
        test, _ = data.load("fmnist", "test")
        originals = test[:10]
        written["reconstructions.png"] = plots.sweep_grid(
            [as_images(originals), as_images(model.decode(model.encode(originals)))],
            ["test image", "decode(encode(x))"], f"{model.name}: reconstructions")
    curve = [r for r in read_json_lines(workdir / "metrics.jsonl") if "elbo" in r]
    if curve:
        written["training_curve.png"] = plots.line_plot(
            {"train ELBO (batch mean)": ([r["step"] for r in curve], [r["elbo"] for r in curve])},
            f"{model.name}: training curve", "step", "ELBO (nats)")
    paths = {}
    for file_name, image in written.items():
        paths[file_name] = plots.save_png(image, out / file_name)
    return paths


def as_images(rows) -> np.ndarray:
    """Pixel probabilities (N, 784) as uint8 28x28 images."""
    return (np.clip(np.asarray(rows), 0, 1) * 255).round().astype(np.uint8).reshape(-1, 28, 28, 1)


def default_description(model: PretrainedVAE) -> str:
    config = model.config
    data_name = {"bdp": "the branching-diffusion tree data", "fmnist": "binarised Fashion-MNIST"}
    return (f"{PAPER_ROW[config.posterior]} (latent dimension {config.latent}) on "
            f"{data_name[config.dataset]}: a VAE {latent_description(config)}; trained in minutes on "
            "one CPU core.")


def training_notes(workdir: Path, bench: dict | None) -> str:
    result = json.loads((workdir / "result.json").read_text())
    lines = ["## Results and training run", "",
             f"{TRAINING_PARAGRAPH_START} {result['step']} Adam steps (batch 100, learning rate 1e-3, "
             f"seed 0) in "
             f"{result['train_seconds'] / 60:.1f} minutes of wall time on one CPU core; "
             f"{result['nonfinite_total']} steps skipped as non-finite. The training curve is "
             "`training_curve.png`."]
    if bench:
        lines += ["", bench_paragraph(bench)]
    return "\n".join(lines)


def bench_paragraph(bench: dict) -> str:
    ll = bench["log_likelihood"]
    return (f"{BENCH_PARAGRAPH_START} on {bench['machine']} in {bench['seconds']:.0f} s ({bench['data']}): "
            f"test log-likelihood {ll['mean']:.2f} +/- {ll['stderr']:.2f} nats (IS, K = {bench['k']}), "
            f"one-sample ELBO {bench['elbo']:.2f} nats.")


def refresh(name: str, bench_json: str | Path) -> Path:
    """New ``nif-zoo bench`` figures into a published VAE whose training workdir is gone: the
    manifest's metrics, the card (model_cards/ and the mirror's README.md); weights and figures
    stay byte for byte.
    """
    entry = registry.get_entry(name)
    if entry["architecture"].get("kind") != "hvae":
        raise ValueError(f"{name} is a flow: publish it again from its workdir "
                         f"(nif-zoo publish WORKDIR --name {name} --bench JSON)")
    if entry.get("revision"):
        raise ValueError(f"{name} is pinned to Hub revision {entry['revision']}, whose card would "
                         "keep the old figures: publish it again with --push")
    bench = json.loads(Path(bench_json).read_text())
    if bench.get("model") != name:
        raise ValueError(f"{bench_json} holds the figures of {bench.get('model')!r}, not {name!r}")
    paragraphs = entry["notes"].split("\n\n")
    kept = [p for p in paragraphs if not p.startswith(BENCH_PARAGRAPH_START)]
    at = next((i + 1 for i, p in enumerate(kept) if p.startswith(TRAINING_PARAGRAPH_START)), len(kept))
    entry["notes"] = "\n\n".join(kept[:at] + [bench_paragraph(bench)] + kept[at:])
    entry["metrics"] = vae_bench.metrics(bench)
    entry["metrics_command"] = f"nif-zoo bench {name}"
    folder = registry.resolve(entry["mirror"])
    previous_card = (folder / CARD_FILE).read_text()
    replace_card(folder, render_card(name, entry))
    entry["files"] = hub.describe_folder(folder)
    try:
        save_entry_with_card(name, entry)
    except BaseException:
        replace_card(folder, previous_card)
        raise
    return folder


def publish(workdir: str | Path, name: str, bench_json: str | Path | None = None,
            description: str = "", notes: str = "", push_repo: str | None = None) -> Path:
    """Writes ``zoo/NAME``, its card and manifest entry from a finished VAE run; optionally pushes."""
    workdir = Path(workdir)
    model = model_from_workdir(workdir, name)
    bench = json.loads(Path(bench_json).read_text()) if bench_json else None
    folder = registry.manifest_path().parent / ZOO_DIR / name
    previous = previous_entry(name)
    entry = {
        "status": "published",
        "description": description or previous.get("description") or default_description(model),
        "architecture": model.config.to_dict(), "data": model.data,
        "hf_repo": previous.get("hf_repo", f"nif-zoo/{name}"), "revision": None,
        "mirror": f"{ZOO_DIR}/{name}",
        "metrics": vae_bench.metrics(bench) if bench else {},
        "metrics_command": f"nif-zoo bench {name}" if bench else None,
        "card": f"model_cards/{name}.md", "train_config": TRAIN_SCRIPT,
        "notes": "\n\n".join(part for part in (training_notes(workdir, bench), notes) if part),
    }
    return write_entry(name, entry, model, folder, lambda out: figures(model, workdir, out), push_repo)
