"""Throughput of the paper's Fashion-MNIST Glow backbone: log-likelihood and training step.

``python -m benchmarks.glow [--quick]``: images/second of jitted ``log_prob`` (forward only)
and of ``train_step`` (Adam, gradient clipping, as training runs it) for the 'normal' head and
the 'nif' head, each with the flow steps unrolled and with the rolled ``nn.scan``; compile time
apart; XLA's FLOP count per image and the GFLOP/s achieved.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _timing
from nif_zoo.configs import base
from nif_zoo.models import FlowModel
from nif_zoo.train import create_train_state, model_config, to_model_input, train_step


def setup(head: str, latent_dim: int, steps: int, hidden: int, unroll: bool, batch: int,
          init_batch: int, seed: int = 0):
    """``(config, model, state, images)``: a freshly initialised model and a uint8 batch.

    Random images stand in for Fashion-MNIST: the cost does not depend on pixel values.
    """
    config = base.get_config("fmnist", head=head, latent_dim=latent_dim if head != "normal" else 0,
                             steps=steps, hidden=hidden, unroll=unroll)
    model = FlowModel(model_config(config))
    rng = np.random.default_rng(seed)
    shape = model.config.image_shape
    init_images = rng.integers(0, 256, (init_batch, *shape), dtype=np.uint8)
    state = create_train_state(config, model, init_images, jax.random.key(seed))
    images = rng.integers(0, 256, (batch, *shape), dtype=np.uint8)
    return config, model, state, images


def bench_variant(head: str, latent_dim: int, steps: int, hidden: int, unroll: bool, batch: int,
                  repeats: int, init_batch: int) -> dict:
    config, model, state, images = setup(head, latent_dim, steps, hidden, unroll, batch,
                                         init_batch)
    mc = model.config
    images = jnp.asarray(images)
    rng = jax.random.key(1)
    x = to_model_input(rng, images, mc.n_bits)
    row: dict = {"head": head, "latent_dim": mc.latent_dim, "steps": steps, "hidden": hidden,
                 "unroll": unroll, "batch": batch,
                 "params": int(sum(p.size for p in jax.tree.leaves(state.params)))}

    def log_prob(params, x):
        return model.apply({"params": params}, x, method=FlowModel.log_prob)

    compiled, compile_s = _timing.compile_timed(log_prob, state.params, x)
    timing = _timing.measure(lambda: compiled(state.params, x), repeats)
    row["log_prob"] = {**timing, "compile_s": compile_s, "xla_flops": _timing.flops(compiled)}

    # As train_and_evaluate jits it.
    compiled, compile_s = _timing.compile_timed(train_step, state, images, rng, mc.n_bits,
                                                mc.dim, static_argnums=(3, 4),
                                                donate_argnums=(0,))
    timing, state = _timing.measure_train(compiled, state, lambda: images, rng, repeats)
    row["train_step"] = {**timing, "compile_s": compile_s, "xla_flops": _timing.flops(compiled),
                         "nonfinite_steps": int(state.nonfinite)}
    for task in ("log_prob", "train_step"):
        row[task]["images_per_s"] = batch / row[task]["median_s"]
    return row


def add_flop_rates(rows: list[dict]) -> None:
    """FLOPs per image from the unrolled compile, for both variants.

    XLA counts a rolled ``while`` loop's body once, so the rolled scan's own count is too low by
    about the number of steps; the arithmetic is the same, so the unrolled count stands for both.
    """
    unrolled = {r["head"]: r for r in rows if r["unroll"]}
    for r in rows:
        ref = unrolled.get(r["head"], r)
        for task in ("log_prob", "train_step"):
            total = ref[task]["xla_flops"]
            if total is None:
                continue
            r[task]["flops_per_image"] = total / r["batch"]
            r[task]["gflop_per_s"] = total / r[task]["median_s"] / 1e9


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="steps=2, hidden=32, few iterations")
    p.add_argument("--steps", type=int, default=16, help="flow steps per level")
    p.add_argument("--hidden", type=int, default=256, help="coupling network channels")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--latent-dim", type=int, default=64, help="k of the 'nif' head")
    p.add_argument("--heads", nargs="+", default=["normal", "nif"], choices=["normal", "nif"])
    p.add_argument("--unroll", nargs="+", default=["true", "false"], choices=["true", "false"],
                   help="which scan variants to time")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--init-batch", type=int, default=256, help="images for ActNorm's data init")
    p.add_argument("--output", help="JSON path (default benchmarks/results/glow.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.hidden, args.repeats, args.init_batch = 2, 32, 3, 32

    _timing.warn_if_busy()
    rows = []
    for head in args.heads:
        for unroll in args.unroll:
            print(f"timing head={head} unroll={unroll} (2 levels x {args.steps} steps x "
                  f"{args.hidden} channels, batch {args.batch}) ...", flush=True)
            rows.append(bench_variant(head, args.latent_dim, args.steps, args.hidden,
                                      unroll == "true", args.batch, args.repeats,
                                      args.init_batch))
    add_flop_rates(rows)

    def cells(r: dict, task: str) -> list:
        t = r[task]
        return [t["images_per_s"], 1e3 * t["median_s"], t["compile_s"],
                t.get("flops_per_image", 0.0) / 1e9, t.get("gflop_per_s")]

    print(_timing.table(
        ["head", "unroll", "logp img/s", "ms", "compile s", "GFLOP/img", "GFLOP/s",
         "train img/s", "ms", "compile s", "GFLOP/img", "GFLOP/s"],
        [[r["head"], r["unroll"], *cells(r, "log_prob"), *cells(r, "train_step")]
         for r in rows]))
    path = _timing.write_json(_timing.output_path("glow", args.quick, args.output), {
        "benchmark": "glow", "quick": args.quick, "machine": _timing.machine(), "rows": rows,
        "note": "random uint8 images; medians exclude compile; flops_per_image from XLA's cost "
                "analysis of the unrolled compile (a rolled loop's body is counted once)"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
