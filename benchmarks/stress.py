"""The stability stress run: the Fashion-MNIST recipe at 10x its learning rate, controls off/on.

``python -m benchmarks.stress WORKDIR_OFF WORKDIR_ON`` after the two trainings of
``nif_zoo/configs/fmnist_stress.py``: prints, per run, the non-finite (skipped) steps, whether it
diverged, the last training and test bits/dim, and the widest per-layer log-det and 1x1
singular-value range the diagnostics saw; writes results/stress.json and a curves PNG.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from benchmarks import _timing
from nif_zoo import plots
from nif_zoo.writers import read_json_lines

DIVERGED_BITS_PER_DIM = 3.0  # 3-bit data: a model worse than uniform (3 bits/dim) has diverged


def summarise(workdir: Path) -> dict:
    rows = read_json_lines(workdir / "metrics.jsonl")
    train = [(r["step"], r["bits_per_dim"]) for r in rows if "bits_per_dim" in r]
    test = [(r["step"], r["eval_bits_per_dim"]) for r in rows if "eval_bits_per_dim" in r]
    diag = [r for r in rows if "diagnostics/nonfinite_total" in r]
    nonfinite = max([int(r.get("nonfinite_total", 0)) for r in rows] or [0])
    log_dets = [v for r in diag for k, v in r.items() if "_log_det_" in k]
    singular = [v for r in diag for k, v in r.items() if "singular_value" in k]
    last_test = test[-1][1] if test else math.nan
    return {
        "steps": train[-1][0] if train else 0,
        "nonfinite_steps": nonfinite,
        "diverged": bool(not math.isfinite(last_test) or last_test > DIVERGED_BITS_PER_DIM),
        "last_train_bits_per_dim": train[-1][1] if train else math.nan,
        "test_bits_per_dim": test,
        "log_det_range": [min(log_dets), max(log_dets)] if log_dets else None,
        "singular_value_range": [min(singular), max(singular)] if singular else None,
        "train_curve": train,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("off", type=Path, help="workdir of fmnist_stress:off")
    parser.add_argument("on", type=Path, help="workdir of fmnist_stress:on")
    parser.add_argument("--png", type=Path, default=_timing.RESULTS / "stress_curves.png")
    args = parser.parse_args()
    result = {"controls_off": summarise(args.off), "controls_on": summarise(args.on)}
    for name, r in result.items():
        test = ", ".join(f"{s}: {v:.4f}" for s, v in r["test_bits_per_dim"])
        print(f"{name}: {r['steps']} steps, {r['nonfinite_steps']} non-finite steps skipped, "
              f"diverged: {r['diverged']}, last train bits/dim {r['last_train_bits_per_dim']:.4f}, "
              f"test bits/dim ({test}), per-layer log-det range {r['log_det_range']}, "
              f"1x1 singular values {r['singular_value_range']}")
    series = {name: ([s for s, _ in r["train_curve"]], [v for _, v in r["train_curve"]])
              for name, r in result.items()}
    plots.save_png(plots.line_plot(series, "Fashion-MNIST recipe at 10x learning rate", "step",
                                   "train bits/dim"), args.png)
    path = _timing.write_json(_timing.RESULTS / "stress.json", result)
    print(f"wrote {path} and {args.png}")


if __name__ == "__main__":
    main()
