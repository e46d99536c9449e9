"""Runs the tiny training config in a fresh process (for kill/resume, NaN and sharding tests).

Usage: python train_run.py WORKDIR NUM_STEPS [--nan-from STEP] [--params-out FILE.npz]
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("num_steps", type=int)
    parser.add_argument("--nan-from", type=int, default=-1, help="inputs become NaN from this step")
    parser.add_argument("--params-out")
    args = parser.parse_args()

    from nif_zoo import train
    from nif_zoo.configs import load_config

    if args.nan_from >= 0:
        # From step nan_from on, batches are all-zero images, which the poisoned input
        # pipeline turns into NaN (a data-dependent switch, so it survives jit tracing).
        original_input, original_batch_at = train.to_model_input, train.datasets.batch_at

        def batch_at(images, batch_size, seed, step):
            batch = original_batch_at(images, batch_size, seed, step)
            return np.zeros_like(batch) if step >= args.nan_from else batch

        def poisoned_input(rng, images, n_bits):
            x = original_input(rng, images, n_bits)
            return jnp.where(jnp.all(images == 0), jnp.nan, x)

        train.datasets.batch_at = batch_at
        train.to_model_input = poisoned_input

    config = load_config("tiny")
    config.update(num_steps=args.num_steps, checkpoint_every=5, eval_every=1000, log_every=5,
                  max_nonfinite_steps=3, keep_checkpoints=10)
    try:
        state = train.train_and_evaluate(config, args.workdir)
    except train.TrainingDiverged as error:
        print("DIVERGED:", error, flush=True)
        raise SystemExit(3) from error
    if args.params_out:
        flat = {jax.tree_util.keystr(k): np.asarray(v)
                for k, v in jax.tree_util.tree_leaves_with_path(state.params)}
        np.savez(args.params_out, **flat)


if __name__ == "__main__":
    main()
