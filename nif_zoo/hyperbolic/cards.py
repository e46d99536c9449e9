"""Model cards of the zoo's VAEs with a hyperbolic latent (and their Euclidean twins)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from nif_zoo.hyperbolic.config import HVAEConfig, for_dataset

TAGS = ["normalizing-flows", "hyperbolic", "variational-autoencoder", "jax", "flax"]
PAPER = ("[Latent Variable Modelling with Hyperbolic Normalizing Flows]"
         "(https://arxiv.org/abs/2002.06336) (Bose et al., ICML 2020)")
DATASET_NAMES = {"bdp": "branching diffusion (synthetic)", "fashion_mnist": "Fashion-MNIST"}
PAPER_ROW = {"euclidean": "Euclidean + NC", "wrapped": "H-VAE", "tc": "H-VAE + TC", "whc": "H-VAE + WHC"}


def latent_description(config: HVAEConfig) -> str:
    if not config.hyperbolic:
        return (f"with a Gaussian latent in R^{config.latent}, posterior pushed through {config.flow_layers} "
                "affine couplings (the paper's Euclidean baseline with a normalizing flow)")
    flow = (f" pushed through {config.flow_layers} {config.posterior.upper()} layers"
            if config.has_flow else " (no flow)")
    radius = "learned" if config.learn_radius else "fixed"
    return (f"with a latent on the hyperboloid H^{config.latent} (radius {radius}, initially "
            f"{config.radius:g}); wrapped-normal posterior{flow}; wrapped-normal prior at the origin")


def train_command(name: str, config: HVAEConfig) -> str:
    """The command that trains this architecture (defaults left out)."""
    parts = ["python -m nif_zoo.hyperbolic.train", f"--dataset {config.dataset}",
             f"--latent {config.latent}", f"--posterior {config.posterior}"]
    default = for_dataset(config.dataset, config.latent, config.posterior)
    if config.flow_layers != default.flow_layers:
        parts.append(f"--flow-layers {config.flow_layers}")
    if config.hidden != default.hidden:
        parts.append(f"--hidden {config.hidden}")
    if not config.learn_radius:
        parts.append("--fixed-radius")
    return " ".join([*parts, f"--workdir workdirs/{name}"])


def render_card(name: str, entry: Mapping[str, Any]) -> str:
    """The card (YAML front matter plus Markdown) of one VAE manifest entry."""
    config = HVAEConfig.from_dict(entry["architecture"])
    dataset = entry["data"]["dataset"]
    metadata = ModelCardData(
        library_name="nif_zoo", license="apache-2.0", tags=list(TAGS), datasets=[dataset],
        metrics=["log_likelihood"], model_name=name if entry["metrics"] else None,
        eval_results=_eval_results(entry) or None)
    sections = [_header(name, entry), _model_section(config, entry), _use_section(name, config),
                "\n".join(["## How it was trained", "", "```bash", train_command(name, config), "```"]),
                _evaluation_section(name, entry), entry.get("notes", ""), _figures_section(entry),
                _limitations_section(config), "\n".join(["## Reference", "", PAPER])]
    body = "\n\n".join(section.strip() for section in sections if section) + "\n"
    return str(ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n{body}"))


def _eval_results(entry: Mapping[str, Any]) -> list[EvalResult]:
    dataset = entry["data"]["dataset"]
    return [EvalResult(task_type="density-estimation", dataset_type=dataset,
                       dataset_name=DATASET_NAMES[dataset], dataset_split="test",
                       metric_type=metric, metric_name=metric.replace("_", " "), metric_value=value)
            for metric, value in sorted(entry["metrics"].items())]


def _header(name: str, entry: Mapping[str, Any]) -> str:
    revision = entry["revision"] or "not pushed yet (files served from the repo mirror)"
    return "\n".join([f"# {name}", "", entry["description"], "",
                      f"Weights: Hugging Face repo `{entry['hf_repo']}`, pinned revision `{revision}`. "
                      f'Load with `nif_zoo.load("{name}")`.'])


def _model_section(config: HVAEConfig, entry: Mapping[str, Any]) -> str:
    data = entry["data"]
    likelihood = ("Bernoulli pixels" if config.likelihood == "bernoulli"
                  else "Gaussian with unit variance")
    return "\n".join([
        "## Model", "",
        f"- Paper model: **{PAPER_ROW[config.posterior]}**, latent dimension {config.latent}, "
        f"of {PAPER}",
        f"- Encoder and decoder: one hidden layer of {config.hidden} units each; likelihood "
        f"{likelihood}",
        f"- Latent: {latent_description(config).removeprefix('with a ')}",
        f"- Data: {DATASET_NAMES[data['dataset']]}, {config.data_dim} numbers a point; "
        f"{data['preprocessing']}",
        f"- Split: {data['split']}"])


def _use_section(name: str, config: HVAEConfig) -> str:
    point = (f"points of H^{config.latent} as {config.latent + 1} ambient (Lorentz) coordinates"
             if config.hyperbolic else f"vectors of R^{config.latent}")
    return "\n".join([
        "## Intended use", "",
        "Research on latent-variable models with hierarchical (tree-like) structure and on "
        f"normalizing flows on manifolds, reproducing the shape of {PAPER}'s table. It is not meant "
        "for decisions about people.", "",
        "```python", "import jax, nif_zoo",
        f'model = nif_zoo.load("{name}")',
        f"z = model.encode(x)                      # {point}",
        "x_mean = model.decode(z)                 # the mean of p(x | z)",
        "ll = model.log_prob(x)                   # nats, importance sampling with K = 500",
        "new = model.sample(jax.random.key(0), 16)",
        "```"])


def _evaluation_section(name: str, entry: Mapping[str, Any]) -> str:
    lines = ["## How it was evaluated", ""]
    if entry["metrics_command"]:
        lines += ["```bash", entry["metrics_command"], "```", ""]
    if entry["metrics"]:
        lines += ["| metric | value |", "| --- | --- |",
                  *(f"| {metric} | {value:.4g} |" for metric, value in sorted(entry["metrics"].items()))]
    else:
        lines.append(f"Not measured yet: run `nif-zoo bench {name}`.")
    lines += ["", "The whole table (Euclidean twin, H-VAE, TC and WHC at latent sizes 2, 4 and 6 on both "
                  "datasets, same estimator and test points) is in `benchmarks/notes/hyperbolic.md`, made by "
                  "`python -m benchmarks.hyperbolic`."]
    return "\n".join(lines)


def _figures_section(entry: Mapping[str, Any]) -> str:
    images = sorted(path for path in entry["files"] if PurePosixPath(path).suffix == ".png")
    return "\n".join(["## Figures", "", *(f"![{PurePosixPath(p).stem}]({p})" for p in images)]) \
        if images else ""


def _limitations_section(config: HVAEConfig) -> str:
    lines = ["## Limitations", "",
             "- Importance-sampled log-likelihoods are lower bounds that tighten with K; compare "
             "models only at the same K, on the same test points.",
             "- Trained for minutes on one CPU core with the zoo's layer sizes, not the paper's: the "
             "figures are this zoo's, not a reproduction of the paper's numbers."]
    if config.dataset == "fmnist":
        lines.append("- Fashion-MNIST is binarised (Bernoulli likelihood): these nats are not "
                     "comparable with bits/dim of the 3-bit flow models.")
    return "\n".join(lines)
