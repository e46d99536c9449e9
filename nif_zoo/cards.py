"""Hugging Face model cards for zoo entries, rendered from the manifest."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from nif_zoo import registry
from nif_zoo.config import ModelConfig

TAGS = ["normalizing-flows", "noisy-injective-flows", "glow", "jax", "flax"]
PIPELINE_TAG = "unconditional-image-generation"
PAPER_URL = "https://arxiv.org/abs/2006.13070"
PAPER = f"[Normalizing Flows Across Dimensions]({PAPER_URL}) (Cunningham et al., 2020)"

SNF_TAGS = ["normalizing-flows", "self-normalizing-flows", "jax", "flax"]
SNF_PAPER = "[Self Normalizing Flows](https://arxiv.org/abs/2011.07248) (Keller et al., ICML 2021)"
SNF_MODELS = {"dense": "2-layer dense flow", "cnn": "9-layer CNN flow", "glow": "Glow-like flow"}

DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "celeba": "CelebA"}

# Bits/dim the paper reports, keyed by model label (see `model_label`).
PAPER_BITS_PER_DIM: dict[str, dict[str, float]] = {
    "fashion_mnist": {
        "NF": 1.518,
        "NIF-64": 1.506,
        "NIF-128": 1.506,
        "NIF-256": 1.515,
        "NIF-512": 1.523,
    },
    "cifar10": {"NF": 1.072, "NIF-512": 1.070},
    "celeba": {"NF": 0.852, "NIF-256": 0.830},
}
PAPER_FID: dict[str, dict[str, float]] = {
    "fashion_mnist": {"NF": 42.77, "NIF-64": 23.97},
    "cifar10": {"NF": 78.58, "NIF-512": 77.47},
    "celeba": {"NF": 63.07, "NIF (latent size not stated)": 30.96},
}

FMNIST_BITS_CAVEAT = (
    "The paper's Fashion-MNIST figures (NF 1.518, NIF-64 1.506, NIF-128 1.506, NIF-256 1.515, "
    "NIF-512 1.523 bits/dim) are most likely 5-bit figures, not 3-bit: on 3-bit Fashion-MNIST "
    "a small public PyTorch Glow (rosinality/glow-pytorch, 2x8x64) reaches 1.108 bits/dim in "
    "4 CPU minutes, 1.020 in 12 and 0.926 in 40 on our machine, and a count-based "
    "4-causal-neighbour model 0.86. Compare with the paper only at 5 bits."
)


def model_label(config: ModelConfig) -> str:
    """Return the paper's name for a model: ``NF`` or ``NIF-<latent_dim>``."""
    if config.head == "normal":
        return "NF"
    prefix = "NIF" if config.head == "nif" else "Deep-NIF"
    return f"{prefix}-{config.latent_dim}"


def snf_label(config: ModelConfig) -> str | None:
    """The Self Normalizing Flows study's name for a model, None for the NIF paper's models.

    The study's models are 8-bit, or have the paper's dense/CNN backbones or self-normalizing
    layers; the NIF paper's figures (3 or 5 bits) say nothing about them.
    """
    if config.backbone == "glow" and config.linear == "exact" and config.n_bits < 8:
        return None
    gradient = "self-normalizing" if config.linear == "selfnorm" else "exact-gradient twin"
    return f"{SNF_MODELS[config.backbone]}, {gradient}"


def card_tags(config: ModelConfig) -> list[str]:
    if snf_label(config) is None:
        return list(TAGS)
    return [*SNF_TAGS, "glow"] if config.backbone == "glow" else list(SNF_TAGS)


def render_card(name: str, entry: Mapping[str, Any]) -> str:
    """Render the model card (YAML front matter plus Markdown body) of one manifest entry."""
    if entry["architecture"].get("kind") == "hvae":
        from nif_zoo.hyperbolic.cards import render_card as render_vae_card

        return render_vae_card(name, entry)
    config = ModelConfig.from_dict(entry["architecture"])
    dataset = entry["data"]["dataset"]
    metadata = ModelCardData(
        library_name="nif_zoo",
        license="apache-2.0",
        tags=card_tags(config),
        datasets=[dataset],
        metrics=["bits_per_dim"],
        pipeline_tag=PIPELINE_TAG,
        model_name=name if entry["metrics"] else None,
        eval_results=_eval_results(entry) or None,
    )
    sections = [
        _header(name, entry),
        _model_section(config, entry),
        _intended_use_section(SNF_PAPER if snf_label(config) else PAPER),
        _training_section(name, entry),
        _evaluation_section(name, entry, config),
        entry.get("notes", ""),
        _samples_section(entry),
        _limitations_section(entry, config),
        _citation_section(SNF_PAPER if snf_label(config) else PAPER),
    ]
    body = "\n\n".join(section.strip() for section in sections if section) + "\n"
    return str(ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n{body}"))


def parse_card(text: str) -> tuple[dict[str, Any], str]:
    """Split a model card into its front matter (as a dict) and its Markdown body."""
    card = ModelCard(text)
    return card.data.to_dict(), card.text


def write_card(
    name: str, entry: Mapping[str, Any], root: str | os.PathLike[str] | None = None
) -> Path:
    """Write the rendered card to ``entry["card"]`` under ``root`` (default: manifest folder)."""
    base = Path(root) if root is not None else registry.manifest_path().parent
    path = base / entry["card"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_card(name, entry), encoding="utf-8")
    return path


def save_entry_with_card(name: str, entry: Mapping[str, Any]) -> Path:
    """Write ``entry``'s card, then the entry into the manifest; undo the card if that fails."""
    card = registry.resolve(entry["card"])
    previous = card.read_bytes() if card.is_file() else None
    text = render_card(name, entry)
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_text(text, encoding="utf-8")
    try:
        registry.write_entry(name, entry)
    except BaseException:
        if previous is None:
            card.unlink(missing_ok=True)
        else:
            card.write_bytes(previous)
        raise
    return card


def _eval_results(entry: Mapping[str, Any]) -> list[EvalResult]:
    dataset = entry["data"]["dataset"]
    return [
        EvalResult(
            task_type=PIPELINE_TAG,
            dataset_type=dataset,
            dataset_name=DATASET_NAMES[dataset],
            dataset_split="test",
            metric_type=metric,
            metric_name=metric.replace("_", " "),
            metric_value=value,
        )
        for metric, value in sorted(entry["metrics"].items())
    ]


def _header(name: str, entry: Mapping[str, Any]) -> str:
    lines = [f"# {name}", "", entry["description"], ""]
    if entry["status"] == "recipe":
        lines += [
            "> **No weights exist yet.** This card describes a *recipe*: the architecture and "
            f"training setup of one model from {PAPER}. Nothing has been trained or uploaded "
            "under this name, so it cannot be loaded; train it with the command under "
            "*How to train it* below.",
        ]
    else:
        revision = entry["revision"] or "not pushed yet (files served from the repo mirror)"
        lines += [
            f"Weights: Hugging Face repo `{entry['hf_repo']}`, pinned revision `{revision}`. "
            f'Load with `nif_zoo.load("{name}")`.',
        ]
    return "\n".join(lines)


def _model_section(config: ModelConfig, entry: Mapping[str, Any]) -> str:
    data = entry["data"]
    h, w, c = config.image_shape
    head = (
        f"standard normal prior (a plain {'Glow ' if config.backbone == 'glow' else ''}flow)"
        if config.head == "normal"
        else f"{model_label(config)} prior: latent dimension {config.latent_dim}, "
        f"`{config.noise}` Gaussian noise, prior network {config.prior_layers} layers x "
        f"{config.prior_hidden} hidden"
    )
    backbone = {
        "dense": f"{config.steps} dense {config.dim} x {config.dim} linear layers, smooth leaky ReLUs "
                 "between",
        "cnn": f"{config.levels} blocks of {config.steps} 3x3 convolutions, a squeeze between blocks, "
               "smooth leaky ReLUs between",
    }.get(config.backbone, f"Glow, {config.levels} levels x {config.steps} steps, "
                           f"{config.hidden} hidden channels, {config.coupling} coupling "
                           f"(scale `{config.scale_fn}`), `{config.invconv}` 1x1 convolutions, "
                           f"`{config.split}` split")
    linear = ("self-normalizing: trained with the learned inverse R in place of W^-1; inverted "
              f"{'exactly' if config.selfnorm_inverse == 'exact' else 'through R'}"
              if config.linear == "selfnorm" else "exact gradients (autodiff through slogdet)")
    label = snf_label(config)
    return "\n".join(
        [
            "## Model",
            "",
            f"- Paper model: **{label}** of {SNF_PAPER}" if label else
            f"- Paper model: **{model_label(config)}** on {DATASET_NAMES[data['dataset']]}",
            f"- Backbone: {backbone}",
            *([f"- Linear layers: {linear}"] if label else []),
            f"- Head: {head}",
            f"- Data: {h}x{w}x{c} images at {config.n_bits} bits; {data['preprocessing']}",
            f"- Split: {data['split']}",
        ]
    )


def _intended_use_section(paper: str) -> str:
    topic, comparison = (
        ("normalizing flows across dimensions", "full-dimensional flows with noisy injective flows")
        if paper == PAPER else ("normalizing flows", "self-normalizing training with exact gradients")
    )
    return "\n".join(
        [
            "## Intended use",
            "",
            f"Research on density estimation and {topic}: "
            f"reproducing and extending {paper}, comparing bits/dim and samples "
            f"of {comparison}, and as a baseline for "
            "related work. It is not meant for decisions about people, nor as an "
            "out-of-distribution or anomaly detector.",
        ]
    )


def _training_section(name: str, entry: Mapping[str, Any]) -> str:
    title = "How to train it" if entry["status"] == "recipe" else "How it was trained"
    return "\n".join(
        [
            f"## {title}",
            "",
            "```bash",
            f"nif-zoo train {entry['train_config']} --workdir workdirs/{name}",
            "```",
        ]
    )


def _evaluation_section(name: str, entry: Mapping[str, Any], config: ModelConfig) -> str:
    dataset = entry["data"]["dataset"]
    recipe = entry["status"] == "recipe"
    command = entry["metrics_command"] or (f"nif-zoo bench {name}" if recipe or not snf_label(config) else "")
    lines = ["## How to evaluate it" if recipe else "## How it was evaluated", ""]
    if command:
        lines += ["```bash", command, "```", ""]
    if entry["metrics"]:
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {metric} | {value:g} |" for metric, value in sorted(entry["metrics"].items())]
    elif recipe:
        lines.append("No figures yet: nothing has been trained under this name.")
    else:
        lines.append("Not measured by `nif-zoo bench`: the figures below come from the training run"
                     + (" and the notes." if entry.get("notes") else "."))
    if not snf_label(config):
        lines += ["", _paper_figures(dataset, model_label(config))]
    return "\n".join(lines)


def _paper_figures(dataset: str, label: str) -> str:
    bits = PAPER_BITS_PER_DIM[dataset]
    fid = PAPER_FID[dataset]
    rows = [
        f"| {f'**{model}** (this model)' if model == label else model} "
        f"| {_figure(bits.get(model), 3)} | {_figure(fid.get(model), 2)} |"
        for model in [*bits, *(m for m in fid if m not in bits)]
    ]
    bits_note = "bits/dim" if dataset == "fashion_mnist" else "bits/dim at s=1"
    lines = [
        f"Reference figures reported in the paper for {DATASET_NAMES[dataset]} "
        f"({bits_note}; FID of samples). They are the paper's numbers, not this zoo's:",
        "",
        "| paper model | bits/dim | FID |",
        "| --- | --- | --- |",
        *rows,
    ]
    if dataset == "fashion_mnist":
        lines += ["", f"**Caveat.** {FMNIST_BITS_CAVEAT}"]
    return "\n".join(lines)


def _figure(value: float | None, decimals: int) -> str:
    return "" if value is None else f"{value:.{decimals}f}"


def _samples_section(entry: Mapping[str, Any]) -> str:
    images = sorted(path for path in entry["files"] if PurePosixPath(path).suffix == ".png")
    lines = ["## Samples", ""]
    if images:
        lines += [f"![{PurePosixPath(path).stem}]({path})" for path in images]
    else:
        lines.append("No samples yet.")
    return "\n".join(lines)


def _limitations_section(entry: Mapping[str, Any], config: ModelConfig) -> str:
    lines = [
        "## Limitations",
        "",
        "- Bits/dim depend on the quantisation: figures at different `n_bits` or with a "
        "different dequantisation are not comparable.",
        "- Likelihoods of flow models are known to rank out-of-distribution data highly; do "
        "not use them to detect anomalies.",
        "- Compare NF and NIF figures only when measured the same way: same `n_bits`, "
        "preprocessing and evaluation command.",
    ]
    if config.linear == "selfnorm" and config.selfnorm_inverse == "approximate":
        lines.append(
            "- Samples and decodings go through the learned inverse R, only approximately W^-1: load "
            "with `selfnorm_inverse='exact'` in the architecture to invert by solves with W."
        )
    if entry["data"]["dataset"] == "celeba":
        lines.append(
            "- CelebA shows faces of celebrities; samples may reproduce its demographic biases."
        )
    if entry["status"] == "recipe":
        lines.append("- No weights exist yet: every figure above is the paper's, not ours.")
    return "\n".join(lines)


def _citation_section(paper: str) -> str:
    return "\n".join(["## Reference", "", paper])
