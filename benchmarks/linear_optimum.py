"""How much a deep flow buys over the best per-pixel linear flow, on 3-bit Fashion-MNIST.

``python -m benchmarks.linear_optimum``: the closed-form optimum (``nif_zoo.linear_optimum``) of
a per-pixel linear flow fitted to the 3-bit test set itself, for squeeze blocks of 1 to 28 pixels
(C = 1 to 784 channels per "pixel"), on the dequantised pixels and after the zoo's logit
transform; beside the test bits/dim that ``nif-zoo bench`` measured for our published models.
"""

from __future__ import annotations

import argparse
import json

import jax

from benchmarks import _timing
from nif_zoo import data, linear_optimum

BLOCKS = (1, 2, 4, 7, 14, 28)
MODELS = ("fmnist-nf.small", "fmnist-nif64.small", "fmnist-nif128.small")


def measured_models() -> dict[str, float]:
    """Test bits/dim of every published Fashion-MNIST model with a bench result."""
    found = {}
    for name in MODELS:
        path = _timing.RESULTS / f"{name}.json"
        if path.exists():
            found[name] = json.loads(path.read_text())["bits_per_dim"]["mean"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="test images (default: all)")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    images = data.load_dataset("fmnist", "test")[0][: args.images]
    result = {"images": len(images), "n_bits": 3, "blocks": list(BLOCKS), "machine": _timing.machine()}
    for label, lam in (("pixels", None), ("logit", 0.05)):
        result[label] = {str(k): v for k, v in
                         linear_optimum.reference_bits_per_dim(images, 3, BLOCKS, logit_lambda=lam).items()}
    result["models"] = measured_models()
    print(f"best per-pixel linear flow on {len(images)} 3-bit test images (fitted to them), bits/dim")
    print(f"{'block':>6} {'C':>5} {'pixels':>8} {'logit':>8}")
    for block in BLOCKS:
        print(f"{block:>6} {block * block:>5} {result['pixels'][str(block)]:>8.4f} "
              f"{result['logit'][str(block)]:>8.4f}")
    for name, bpd in result["models"].items():
        print(f"{name}: {bpd:.4f} (nif-zoo bench)")
    path = _timing.write_json(_timing.RESULTS / "linear_optimum.json", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
