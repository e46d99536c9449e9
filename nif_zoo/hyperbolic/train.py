"""Trains one VAE of the hyperbolic benchmark and saves it as a zoo folder (``WORKDIR/model``).

    python -m nif_zoo.hyperbolic.train --dataset bdp --latent 2 --posterior whc --workdir W

Runs again with the same command resume from the newest Orbax checkpoint in ``W/checkpoints``
(batches depend only on the seed and the step, so a resumed run sees the same data). A step whose
loss or gradient is not finite is skipped; too many in a row stop the run. Adam at 1e-3 and batch
100 are the authors'; the step counts are this zoo's (about 1-3 minutes per run on one CPU core).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from nif_zoo import data as image_data
from nif_zoo.hyperbolic import config as configs
from nif_zoo.hyperbolic import data
from nif_zoo.hyperbolic.pretrained import PretrainedVAE
from nif_zoo.hyperbolic.vae import HVAE, elbo_per_row
from nif_zoo.train import NonfiniteGuard, TrainState, checkpoint_manager, restore_or_init, write_json_atomic
from nif_zoo.writers import create_writer

DEFAULT_STEPS = {"bdp": 6000, "fmnist": 5000}
DATA_SPEC = {
    "bdp": {"dataset": "bdp", "split": "seeded 70/30 split of the 315 points (seed 0)",
            "preprocessing": "branching diffusion (dim 50, depth 5, 2 children, 5 noisy siblings), "
                             "standardised per dimension"},
    "fmnist": {"dataset": "fashion_mnist", "split": "standard train / test",
               "preprocessing": "pixels / 255, binarised: Bernoulli draws in training, > 0.5 in test"},
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 6000
    batch_size: int = 100
    learning_rate: float = 1e-3
    grad_clip: float = 100.0
    seed: int = 0
    log_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    max_nonfinite_steps: int = 20
    time_limit_minutes: float = 0.0


@functools.lru_cache
def model_for(config: configs.HVAEConfig) -> HVAE:
    """One module object per architecture, and one optimizer per setting (below): the train state
    holds both as static fields, so reusing them lets a second run in the process skip compiling.
    """
    return HVAE(config)


@functools.lru_cache
def _optimizer(grad_clip: float, learning_rate: float) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.adam(learning_rate))


def create_train_state(model: HVAE, train: TrainConfig, rng: jax.Array) -> TrainState:
    x = jnp.zeros((2, model.config.data_dim), jnp.float32)
    params = _init(model, rng, x)
    state = TrainState.create(apply_fn=model.apply, params=params, nonfinite=jnp.zeros((), jnp.int32),
                              tx=_optimizer(train.grad_clip, train.learning_rate))
    # An array step (not the Python int 0) keeps one signature for fresh, stepped and restored states,
    # so the train step compiles once.
    return state.replace(step=jnp.zeros((), jnp.int32))


def train_step(state: TrainState, rows: jax.Array, rng: jax.Array, binarise: bool):
    """One Adam step on the mean negative ELBO; a non-finite loss or gradient leaves the state."""
    x = data.training_rows(rows, jax.random.fold_in(rng, 0), binarise)

    def loss_fn(params):
        return -jnp.mean(state.apply_fn({"params": params}, x, jax.random.fold_in(rng, 1)))

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    stepped = state.apply_gradients(grads=grads)
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), stepped, state)
    new_state = new_state.replace(step=state.step + 1, nonfinite=state.nonfinite + (~finite))
    return new_state, {"elbo": jnp.where(finite, -loss, jnp.nan), "grad_norm": grad_norm}


_jitted_train_step = jax.jit(train_step, static_argnums=3, donate_argnums=0)


def mean_elbo(model: HVAE, params, rows: np.ndarray, rng: jax.Array, batch: int = 1000) -> float:
    parts = [elbo_per_row(model, params, jnp.asarray(rows[i:i + batch]), jax.random.fold_in(rng, i))
             for i in range(0, len(rows), batch)]
    return float(np.concatenate([np.asarray(p) for p in parts]).mean())


@functools.partial(jax.jit, static_argnums=0)
def _init(model: HVAE, rng, x):
    return model.init(rng, x, jax.random.key(0))["params"]




def _check_workdir(workdir: Path, record: dict) -> None:
    path = workdir / "config.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if previous.get("model") != record["model"]:
            raise ValueError(f"{workdir} holds a run of another model ({previous.get('model')}); "
                             "use a fresh workdir")
    write_json_atomic(path, record)


def train_and_evaluate(model_config: configs.HVAEConfig, train: TrainConfig, workdir: str | Path,
                       rows: np.ndarray | None = None, test_rows: np.ndarray | None = None,
                       init_from: PretrainedVAE | None = None) -> dict:
    """Trains to ``train.steps`` (resuming), then saves ``workdir/model``; returns the summary.

    ``rows`` and ``test_rows`` replace the dataset's splits (a user's data, for fine-tuning);
    ``init_from`` starts from a trained model's weights instead of fresh ones.
    """
    started = time.time()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    record = {"model": model_config.to_dict(), "train": dataclasses.asdict(train)}
    if init_from is not None:
        record["init_from"] = init_from.name
    _check_workdir(workdir, record)
    model = model_for(model_config)
    rows = data.load(model_config.dataset, "train")[0] if rows is None else rows
    test_rows = data.load(model_config.dataset, "test")[0] if test_rows is None else test_rows
    binarise = model_config.likelihood == "bernoulli"
    init_rng, step_rng, eval_rng = jax.random.split(jax.random.key(train.seed), 3)
    manager = checkpoint_manager(workdir, train)
    fresh = create_train_state(model, train, init_rng)
    if init_from is not None:
        if init_from.config != model_config:
            raise ValueError(f"init_from has architecture {init_from.config}, not {model_config}")
        fresh = fresh.replace(params=init_from.params, opt_state=fresh.tx.init(init_from.params))
    # Committed to the device like a restored state, so fresh and resumed runs share one compile.
    state = jax.device_put(restore_or_init(manager, fresh), jax.local_devices()[0])
    start_step = int(state.step)
    writer = create_writer(workdir, console=False)
    loop_started, history, first_step_seconds = time.time(), [], 0.0
    guard = NonfiniteGuard(train.max_nonfinite_steps, manager, workdir,
                           "lower the learning rate, or resume to retry with other draws")
    for step in range(start_step, train.steps):
        batch = jnp.asarray(image_data.batch_at(rows, train.batch_size, train.seed, step))
        skipped_before = int(state.nonfinite)
        state, metrics = _jitted_train_step(state, batch, jax.random.fold_in(step_rng, step), binarise)
        history.append(metrics)
        if step == start_step:
            first_step_seconds = time.time() - loop_started  # mostly compilation
        guard.check(skipped_before, int(state.nonfinite), step)
        done = step + 1
        if done % train.log_every == 0 or done == train.steps:
            _log(writer, history, state, done, start_step, train.steps, loop_started)
            history = []
        time_up = train.time_limit_minutes and time.time() - loop_started > 60 * train.time_limit_minutes
        if done % train.checkpoint_every == 0 or done == train.steps or time_up:
            manager.save(done, args=ocp.args.StandardSave(state))
        if time_up:
            print(f"time limit reached at step {done}; run the same command again to resume", flush=True)
            break
    manager.wait_until_finished()
    writer.flush()
    train_seconds = time.time() - loop_started
    summary = {"start_step": start_step, "step": int(state.step), "steps": train.steps,
               "train_seconds": train_seconds, "first_step_seconds": first_step_seconds,
               "steps_per_sec": (int(state.step) - start_step) / max(train_seconds, 1e-9),
               "nonfinite_total": int(state.nonfinite)}
    if int(state.step) >= train.steps:
        summary["test_elbo"] = mean_elbo(model, state.params, test_rows, eval_rng)
        spec = DATA_SPEC[model_config.dataset] if init_from is None else {
            **init_from.data, "split": "the user's data (last tenth held out)",
            "preprocessing": f"fine-tuned from {init_from.name}; " + init_from.data["preprocessing"]}
        pretrained = PretrainedVAE(model_config, jax.device_get(state.params), workdir.name, spec)
        summary["radius"] = pretrained.radius
        pretrained.save_pretrained(workdir / "model", card=model_card(workdir.name, model_config, train,
                                                                      summary))
    summary["wall_seconds"] = time.time() - started
    write_json_atomic(workdir / "result.json", summary)
    return summary


def fine_tune(model: PretrainedVAE, rows: np.ndarray, workdir: str | Path, steps: int = 1000,
              learning_rate: float = 1e-4, seed: int = 0) -> dict:
    """Goes on training ``model`` on a user's ``rows``; the last tenth is held out for the ELBO."""
    if len(rows) < 2:
        raise ValueError(f"fine-tuning needs at least 2 rows, got {len(rows)}")
    held_out = max(1, len(rows) // 10)
    train_rows, test_rows = rows[:-held_out], rows[-held_out:]
    if model.config.likelihood == "bernoulli":
        test_rows = data.binarise(test_rows)
    settings = TrainConfig(steps=steps, batch_size=min(100, len(train_rows)), learning_rate=learning_rate,
                           seed=seed, log_every=max(1, min(500, steps // 10)))
    return train_and_evaluate(model.config, settings, workdir, train_rows, test_rows, init_from=model)


def _log(writer, history: list, state: TrainState, step: int, start_step: int, steps: int,
         started: float) -> None:
    elbo = np.asarray([float(m["elbo"]) for m in history])
    rate = (step - start_step) / max(time.time() - started, 1e-9)
    mean = float(np.nanmean(elbo)) if np.isfinite(elbo).any() else float("nan")
    writer.write_scalars(step, {"elbo": mean, "steps_per_sec": rate,
                                "grad_norm": float(np.mean([float(m["grad_norm"]) for m in history])),
                                "nonfinite_total": int(state.nonfinite)})
    print(f"step {step}/{steps}  ELBO {mean:.3f}  {rate:.1f} steps/s  "
          f"time left {(steps - step) / max(rate, 1e-9) / 60:.1f} min", flush=True)


def model_card(name: str, config: configs.HVAEConfig, train: TrainConfig, summary: dict) -> str:
    if not config.hyperbolic:
        latent = f"Gaussian latent in R^{config.latent} and an affine-coupling posterior flow"
    else:
        flow = f" through {config.flow_layers} {config.posterior.upper()} layers" if config.has_flow else ""
        latent = f"wrapped-normal posterior on H^{config.latent}{flow}"
    return (f"---\nlibrary_name: nif_zoo\n---\n# {name}\n\n"
            f"A VAE with a {latent} (Bose et al., ICML 2020, hyperbolic normalizing flows), trained on "
            f"{DATA_SPEC[config.dataset]['dataset']} ({DATA_SPEC[config.dataset]['preprocessing']}).\n\n"
            f"- Architecture: `{json.dumps(config.to_dict(), sort_keys=True)}`\n"
            f"- Training: {train.steps} Adam steps, learning rate {train.learning_rate}, batch "
            f"{train.batch_size}, seed {train.seed}; training loop {summary['train_seconds']:.0f} s "
            "(wall) on one CPU core.\n"
            f"- Test ELBO (one sample per point): {summary['test_elbo']:.3f} nats; learned radius "
            f"{summary['radius']:.4g}.\n"
            "- Test log-likelihood by importance sampling (K = 500): see `benchmarks/hyperbolic.py`.\n\n"
            "```python\nimport nif_zoo, jax\nmodel = nif_zoo.load(FOLDER_OR_NAME)\n"
            "z = model.encode(x)          # latent points\nll = model.log_prob(x)        # IS, K = 500\n"
            "x_new = model.sample(jax.random.key(0), 16)\n```\n")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(configs.DATASETS), required=True)
    parser.add_argument("--latent", type=int, required=True)
    parser.add_argument("--posterior", choices=configs.POSTERIORS, required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, help="default: 6000 (bdp), 5000 (fmnist)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flow-layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, help="encoder/decoder width (200 bdp, 256 fmnist)")
    parser.add_argument("--fixed-radius", action="store_true", help="keep R = 1 instead of learning it")
    parser.add_argument("--log-every", type=int, default=500)
    parser.add_argument("--time-limit-minutes", type=float, default=0.0)
    args = parser.parse_args(argv)
    changes = {"flow_layers": args.flow_layers, "learn_radius": not args.fixed_radius}
    if args.hidden:
        changes["hidden"] = args.hidden
    model_config = configs.for_dataset(args.dataset, args.latent, args.posterior, **changes)
    train = TrainConfig(steps=args.steps or DEFAULT_STEPS[args.dataset], batch_size=args.batch_size,
                        learning_rate=args.learning_rate, seed=args.seed, log_every=args.log_every,
                        time_limit_minutes=args.time_limit_minutes)
    summary = train_and_evaluate(model_config, train, args.workdir)
    print(json.dumps(summary, sort_keys=True), flush=True)
    return summary


if __name__ == "__main__":
    main()
