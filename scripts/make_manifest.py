"""Regenerate the paper's recipe entries in the manifest and every model card.

Published entries already in the manifest are kept as they are; only their cards are
re-rendered. Run from anywhere: ``python scripts/make_manifest.py [--cards-only]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nif_zoo import cards, registry
from nif_zoo.config import ModelConfig

PREPROCESSING = "quantise to 3 bits, uniform dequantisation, logit with lambda 0.05"

# prefix -> (dataset, image_shape, levels, split description)
DATASETS: dict[str, tuple[str, tuple[int, int, int], int, str]] = {
    "fmnist": ("fashion_mnist", (28, 28, 1), 2, "standard 60k/10k"),
    "cifar10": ("cifar10", (32, 32, 3), 4, "standard 50k/10k"),
    "celeba": (
        "celeba",
        (64, 64, 3),
        5,
        "img_align_celeba, stride 2, crop rows 26:-19 cols 12:-13; first 90% train",
    ),
}
LATENT_DIMS = (64, 128, 256, 512)


def recipe_entries() -> dict[str, dict[str, Any]]:
    """Return the paper's grid of recipes: every dataset with NF and NIF-{64..512}."""
    entries = {}
    for prefix, (dataset, image_shape, levels, split) in DATASETS.items():
        for latent_dim in (0, *LATENT_DIMS):
            model = f"nif{latent_dim}" if latent_dim else "nf"
            name = f"{prefix}-{model}"
            config = ModelConfig(
                image_shape=image_shape,
                n_bits=3,
                logit_lambda=0.05,
                levels=levels,
                steps=16,
                hidden=256,
                scale_fn="exp_tanh",
                split="passthrough",
                head="nif" if latent_dim else "normal",
                latent_dim=latent_dim,
            )
            entries[name] = _recipe(name, model, prefix, dataset, split, config)
    return entries


def _recipe(
    name: str, model: str, prefix: str, dataset: str, split: str, config: ModelConfig
) -> dict[str, Any]:
    h, w, _ = config.image_shape
    prior = (
        "a standard normal prior"
        if config.head == "normal"
        else f"a Gaussian NIF prior head of latent dimension {config.latent_dim}"
    )
    return {
        "status": "recipe",
        "description": (
            f"{cards.model_label(config)} on {config.n_bits}-bit "
            f"{cards.DATASET_NAMES[dataset]} {h}x{w}: Glow ({config.levels} levels x "
            f"{config.steps} steps, {config.hidden} hidden) with {prior}; the paper's recipe."
        ),
        "architecture": config.to_dict(),
        "data": {
            "dataset": dataset,
            "image_shape": list(config.image_shape),
            "n_bits": config.n_bits,
            "preprocessing": PREPROCESSING,
            "split": split,
        },
        "hf_repo": f"nif-zoo/{name}",
        "revision": None,
        "mirror": None,
        "files": {},
        "metrics": {},
        "metrics_command": None,
        "card": f"model_cards/{name}.md",
        "train_config": f"nif_zoo/configs/{prefix}_{model}.py",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cards-only", action="store_true", help="only re-render the cards")
    args = parser.parse_args()

    path = registry.manifest_path()
    if path.exists():
        manifest = registry.load_manifest(path)
    else:
        manifest = {"format_version": registry.SUPPORTED_FORMAT_VERSION, "models": {}}
    models = manifest["models"]
    if not args.cards_only:
        for name, entry in recipe_entries().items():
            if models.get(name, {}).get("status") != "published":
                models[name] = entry
    for name, entry in sorted(models.items()):
        cards.write_card(name, entry, root=path.parent)
    registry.write_manifest(manifest, path)
    print(f"wrote {len(models)} entries to {path} and their cards under {Path(path).parent}")


if __name__ == "__main__":
    main()
