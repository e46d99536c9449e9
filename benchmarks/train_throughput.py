"""Training images/second of the paper's Fashion-MNIST recipe on 1 and on 4 emulated CPU devices.

``python -m benchmarks.train_throughput [--quick]``: ``train_step`` jitted and sharded as
``train_and_evaluate`` does it (the batch split over a mesh of every device, the state
replicated, each host batch put on the mesh every step), at several batch sizes. The device count
of the CPU backend is fixed when jax starts, so each count runs in a fresh subprocess of this
script with ``--xla_force_host_platform_device_count``. Emulated devices share the same cores: the
4-device figure measures the sharded path's overhead, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def worker(args: argparse.Namespace) -> dict:
    """Runs in the subprocess, after XLA_FLAGS is set: imports jax only here."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec

    from benchmarks import _timing
    from nif_zoo.configs import base
    from nif_zoo.models import FlowModel
    from nif_zoo.train import create_train_state, data_mesh, model_config, train_step

    config = base.get_config("fmnist", head=args.head,
                             latent_dim=args.latent_dim if args.head != "normal" else 0,
                             steps=args.steps, hidden=args.hidden)
    model = FlowModel(model_config(config))
    mc = model.config
    mesh = data_mesh()
    replicated = NamedSharding(mesh, PartitionSpec())
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    rng = np.random.default_rng(0)
    init_images = rng.integers(0, 256, (args.init_batch, *mc.image_shape), dtype=np.uint8)
    step_rng = jax.random.key(1)
    rows = []
    for batch in args.batches:
        if batch % mesh.size:
            print(f"skipping batch {batch}: not divisible over {mesh.size} devices", flush=True)
            continue
        print(f"  {mesh.size} device(s), batch {batch} ...", flush=True)
        state = create_train_state(config, model, init_images, jax.random.key(0))
        state = jax.device_put(state, replicated)
        host_batch = rng.integers(0, 256, (batch, *mc.image_shape), dtype=np.uint8)
        images = jax.make_array_from_process_local_data(batch_sharding, host_batch)
        compiled, compile_s = _timing.compile_timed(
            train_step, state, images, jax.random.fold_in(step_rng, 0), mc.n_bits, mc.dim,
            static_argnums=(3, 4), donate_argnums=(0,))
        timing, state = _timing.measure_train(
            compiled, state,
            # train.py puts each host batch on the mesh every step: part of the cost.
            lambda b=host_batch: jax.make_array_from_process_local_data(batch_sharding, b),
            step_rng, args.repeats, warmup=2)
        rows.append({"devices": mesh.size, "batch": batch, "compile_s": compile_s, **timing,
                     "images_per_s": batch / timing["median_s"],
                     "temp_mb": (_timing.temp_bytes(compiled) or 0) / 1e6,
                     "nonfinite_steps": int(state.nonfinite)})
    return {"machine": _timing.machine(), "model": mc.to_dict(), "rows": rows}


def run_subprocess(devices: int, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                        + f" --xla_force_host_platform_device_count={devices}").strip()
    env["JAX_PLATFORMS"] = "cpu"  # the emulated devices are CPU ones
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks.train_throughput", "--worker-output", str(out),
               "--head", args.head, "--latent-dim", str(args.latent_dim),
               "--steps", str(args.steps), "--hidden", str(args.hidden),
               "--repeats", str(args.repeats), "--init-batch", str(args.init_batch),
               "--batches", *map(str, args.batches)]
        subprocess.run(cmd, env=env, check=True, cwd=Path(__file__).resolve().parents[1])
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny model, batch 8/16, few iterations")
    p.add_argument("--devices", type=int, nargs="+", default=[1, 4])
    p.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    p.add_argument("--head", default="nif", choices=["normal", "nif"])
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--init-batch", type=int, default=256, help="images for ActNorm's data init")
    p.add_argument("--output", help="JSON path (default benchmarks/results/train_throughput.json)")
    p.add_argument("--worker-output", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker_output:
        Path(args.worker_output).write_text(json.dumps(worker(args)))
        return
    if args.quick:
        args.steps, args.hidden, args.batches, args.repeats, args.init_batch = 2, 16, [8, 16], 3, 32

    from benchmarks import _timing  # imports jax, which the subprocesses must not inherit

    _timing.warn_if_busy()
    print(f"head={args.head} (k={args.latent_dim}), 2 levels x {args.steps} steps x "
          f"{args.hidden} channels", flush=True)
    runs = [run_subprocess(n, args) for n in args.devices]
    rows = [r for run in runs for r in run["rows"]]
    single = {r["batch"]: r["images_per_s"] for r in rows if r["devices"] == 1}
    print(_timing.table(
        ["devices", "batch", "images/s", "ms/step", "min ms", "vs 1 device", "compile s",
         "temp MB"],
        [[r["devices"], r["batch"], r["images_per_s"], 1e3 * r["median_s"], 1e3 * r["min_s"],
          r["images_per_s"] / single[r["batch"]] if r["batch"] in single else None,
          r["compile_s"], r["temp_mb"]] for r in rows]))
    path = _timing.write_json(
        _timing.output_path("train_throughput", args.quick, args.output),
        {"benchmark": "train_throughput", "quick": args.quick, "model": runs[0]["model"],
         "machine": runs[0]["machine"], "rows": rows,
         "machines_by_devices": {str(n): run["machine"] for n, run in zip(args.devices, runs,
                                                                          strict=True)},
         "note": "train_step as train_and_evaluate runs it: batch sharded over all devices, "
                 "state replicated; random uint8 images; medians exclude compile"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
