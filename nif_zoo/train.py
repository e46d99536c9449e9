"""Training and fine-tuning: small top-level functions and one loop (Flax examples style).

No `from __future__ import annotations` here: clu metric collections read their annotations.
"""


import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from clu import metrics
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nif_zoo import data as datasets
from nif_zoo import diagnostics
from nif_zoo.config import ModelConfig
from nif_zoo.layers.preprocess import dequantize, quantize_pixels
from nif_zoo.models import FlowModel
from nif_zoo.writers import create_writer


class TrainingDiverged(RuntimeError):
    """Too many non-finite steps in a row."""


class NonfiniteGuard:
    """Counts steps skipped in a row for a non-finite loss or gradient; past ``limit`` it waits for
    pending checkpoint writes and stops the run, naming the last good checkpoint and ``advice``.
    """

    def __init__(self, limit: int, manager: ocp.CheckpointManager, workdir: Path, advice: str):
        self.limit, self.manager, self.workdir, self.advice = limit, manager, workdir, advice
        self.consecutive = 0

    def check(self, skipped_before: int, skipped_after: int, step: int) -> None:
        self.consecutive = self.consecutive + 1 if skipped_after > skipped_before else 0
        if self.consecutive >= self.limit:
            self.manager.wait_until_finished()
            raise TrainingDiverged(
                f"{self.consecutive} non-finite steps in a row at step {step + 1} (loss or gradient "
                f"is NaN/Inf); stopped. The last good checkpoint (step {self.manager.latest_step()}) in "
                f"{self.workdir / 'checkpoints'} is intact: {self.advice}.")


class TrainState(train_state.TrainState):
    nonfinite: jax.Array  # steps skipped so far because the loss or a gradient was not finite


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
    bits_per_dim: metrics.Average.from_output("bits_per_dim")
    grad_norm: metrics.Average.from_output("grad_norm")
    skipped: metrics.Average.from_output("skipped")


@flax.struct.dataclass
class SelfNormTrainMetrics(metrics.Collection):
    bits_per_dim: metrics.Average.from_output("bits_per_dim")
    grad_norm: metrics.Average.from_output("grad_norm")
    skipped: metrics.Average.from_output("skipped")
    reconstruction: metrics.Average.from_output("reconstruction")


def write_json_atomic(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=list) + "\n")
    os.replace(tmp, path)


def load_workdir(workdir: str | Path, step: int | None = None):
    """``(config, params, step)`` of the newest checkpoint in a training workdir (or of ``step``)."""
    workdir = Path(workdir)
    if not (workdir / "config.json").exists():
        raise FileNotFoundError(f"{workdir} is not a training workdir (no config.json)")
    config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
    model = FlowModel(model_config(config))
    manager = checkpoint_manager(workdir, config)
    if step is not None and step not in manager.all_steps():
        raise FileNotFoundError(f"{workdir / 'checkpoints'} holds no checkpoint of step {step} "
                                f"(it has {sorted(manager.all_steps())})")
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"{workdir / 'checkpoints'} holds no checkpoint yet")
    images = np.zeros((2, *model.config.image_shape), np.uint8)
    abstract = jax.eval_shape(
        lambda: create_train_state(config, model, images, jax.random.key(0)))
    state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return config, state.params, step


def model_config(config: ml_collections.ConfigDict) -> ModelConfig:
    return ModelConfig.from_dict(config.model.to_dict())


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam with linear warm-up and global-norm clipping (the paper's recipe)."""
    schedule = optax.linear_schedule(0.0, config.learning_rate, max(config.warmup_steps, 1))
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), optax.adam(schedule))


def to_model_input(rng: jax.Array, images: jax.Array, n_bits: int) -> jax.Array:
    """uint8 images -> n-bit values -> fresh uniform dequantisation in ``[-1/2, 1/2)``."""
    return dequantize(rng, quantize_pixels(images, n_bits), n_bits)[0]


def create_train_state(config, model: FlowModel, init_images: np.ndarray, rng: jax.Array,
                       params: Any = None) -> TrainState:
    """Initialises parameters (ActNorm from ``init_images``) unless ``params`` are given."""
    if params is None:
        rng_x, rng_init = jax.random.split(rng)
        x = to_model_input(rng_x, jnp.asarray(init_images), model.config.n_bits)
        params = jax.jit(model.init)(rng_init, x)["params"]
    return TrainState.create(apply_fn=model.apply, params=params, tx=create_optimizer(config),
                             nonfinite=jnp.zeros((), jnp.int32))


def train_step(state: TrainState, images: jax.Array, rng: jax.Array, n_bits: int, dim: int,
               reconstruction_weight: float | None = None):
    """One Adam step on mean bits/dim; a non-finite loss or gradient leaves the state unchanged.

    ``reconstruction_weight`` (lambda, for self-normalizing models; None otherwise) adds lambda
    times the sum of the layers' sown reconstruction errors, weighed like ``-log p`` in nats per
    example as in the paper (so divided by ``dim log 2`` beside bits/dim).
    """
    x = to_model_input(jax.random.fold_in(rng, 0), images, n_bits)
    if reconstruction_weight is not None:
        return _selfnorm_train_step(state, x, rng, n_bits, dim, reconstruction_weight)

    def loss_fn(params):
        objective = state.apply_fn({"params": params}, x, jax.random.fold_in(rng, 1),
                                   method=FlowModel.objective)
        return -jnp.mean(objective) / (dim * math.log(2.0)) + n_bits

    bpd, grads = jax.value_and_grad(loss_fn)(state.params)
    return _apply_if_finite(state, bpd, grads, TrainMetrics, bits_per_dim=bpd)


def _selfnorm_train_step(state: TrainState, x: jax.Array, rng: jax.Array, n_bits: int, dim: int,
                         reconstruction_weight: float):
    def loss_fn(params):
        objective, sown = state.apply_fn({"params": params}, x, jax.random.fold_in(rng, 1),
                                         method=FlowModel.objective, mutable=["losses"])
        reconstruction = sum(jnp.sum(v) for v in jax.tree.leaves(sown))
        bpd = -jnp.mean(objective) / (dim * math.log(2.0)) + n_bits
        return bpd + reconstruction_weight * reconstruction / (dim * math.log(2.0)), (bpd, reconstruction)

    (loss, (bpd, reconstruction)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return _apply_if_finite(state, loss, grads, SelfNormTrainMetrics, bits_per_dim=bpd,
                            reconstruction=reconstruction)


def _apply_if_finite(state: TrainState, loss, grads, collection, **outputs):
    """The Adam step unless the loss or a gradient is not finite; ``outputs`` become metrics."""
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    stepped = state.apply_gradients(grads=grads)
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), stepped, state)
    new_state = new_state.replace(step=state.step + 1, nonfinite=state.nonfinite + (~finite))
    skipped = (~finite).astype(jnp.float32)
    outputs = {k: jnp.where(finite, v, 0.0) for k, v in {**outputs, "grad_norm": grad_norm}.items()}
    return new_state, collection.single_from_model_output(skipped=skipped, **outputs)


def eval_bits_per_dim(model: FlowModel, params, images: np.ndarray, rng: jax.Array,
                      batch_size: int = 256, s: float = 1.0) -> np.ndarray:
    """Per-image test bits/dim with one dequantisation draw (ELBO for deep NIF)."""
    out = [np.asarray(_eval_batch(model, params, jnp.asarray(b), jax.random.fold_in(rng, i), s))
           for i, b in enumerate(datasets.sequential_batches(images, batch_size))]
    return np.concatenate(out)


@functools.partial(jax.jit, static_argnums=(0,))
def _eval_batch(model: FlowModel, params, images, rng, s):
    n_bits, dim = model.config.n_bits, model.config.dim
    x = to_model_input(jax.random.fold_in(rng, 0), images, n_bits)
    if model.exact:
        log_p = model.apply({"params": params}, x, s, method=FlowModel.log_prob)
    else:
        log_p = model.apply({"params": params}, x, jax.random.fold_in(rng, 1),
                            method=FlowModel.elbo)
    return -log_p / (dim * math.log(2.0)) + n_bits


def data_mesh() -> Mesh:
    """A 1-d mesh over every device (all hosts): batches split, parameters replicated."""
    return Mesh(np.asarray(jax.devices()), ("data",))


def checkpoint_manager(workdir: Path, config) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True)
    return ocp.CheckpointManager(Path(workdir).resolve() / "checkpoints", options=options)


def restore_or_init(manager: ocp.CheckpointManager, state: TrainState) -> TrainState:
    """The newest checkpoint's state if any, else ``state`` unchanged."""
    step = manager.latest_step()
    if step is None:
        return state
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def _log(writer, history: TrainMetrics, state: TrainState, config, step: int, start_step: int,
         started: float) -> None:
    """Writes the metrics since the last log and prints a progress line with the time left."""
    summary = {k: float(v) for k, v in history.compute().items()}
    rate = (step - start_step) / max(time.time() - started, 1e-9)
    summary.update(steps_per_sec=rate, images_per_sec=rate * config.batch_size,
                   nonfinite_total=int(state.nonfinite), start_step=start_step,
                   wall_seconds=time.time() - started)
    writer.write_scalars(step, summary)
    left = (config.num_steps - step) / max(rate, 1e-9)
    print(f"step {step}/{config.num_steps}  bits/dim {summary['bits_per_dim']:.4f}  "
          f"grad norm {summary['grad_norm']:.2f}  {rate:.2f} steps/s  "
          f"{summary['images_per_sec']:.1f} images/s  time left {left / 60:.1f} min", flush=True)


def initial_params(config, model: FlowModel, init_images: np.ndarray, rng: jax.Array):
    """Fresh parameters, or those of ``config.init_from`` (fine-tuning)."""
    if not config.init_from:
        return None
    from nif_zoo.pretrained import load

    source = load(config.init_from)
    if not config.reinit_head:
        if source.config != model.config:
            raise ValueError(f"init_from={config.init_from!r} has architecture {source.config}, "
                             f"the config asks for {model.config}; set reinit_head=True to keep "
                             "only the backbone, or match the architecture")
        return source.params
    if source.config.replace(head=model.config.head, latent_dim=model.config.latent_dim,
                             noise=model.config.noise) != model.config:
        raise ValueError("reinit_head keeps the backbone: its architecture must match init_from's")
    fresh = create_train_state(config, model, init_images, rng).params
    return {**fresh, "backbone": source.params["backbone"]}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> TrainState:
    """Trains to ``config.num_steps``, resuming from the newest checkpoint in ``workdir``."""
    mesh = data_mesh()
    if config.batch_size % mesh.size:
        raise ValueError(f"batch_size {config.batch_size} must divide evenly over {mesh.size} devices")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(workdir / "config.json", config.to_dict())
    model = FlowModel(model_config(config))
    mc = model.config
    train_images, _ = datasets.load_dataset(config.data, config.train_split, mc.image_shape)
    eval_images, _ = datasets.load_dataset(config.data, config.eval_split, mc.image_shape)
    eval_images = eval_images[: config.eval_examples]
    rng = jax.random.key(config.seed)
    init_rng, step_rng, eval_rng = jax.random.split(rng, 3)
    init_images = datasets.batch_at(train_images, min(config.init_batch_size, len(train_images)),
                                    config.seed, 0)
    state = create_train_state(config, model, init_images, init_rng,
                               initial_params(config, model, init_images, init_rng))
    manager = checkpoint_manager(workdir, config)
    state = restore_or_init(manager, state)

    replicated = NamedSharding(mesh, PartitionSpec())
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    state = jax.device_put(state, replicated)
    step_fn = jax.jit(train_step, static_argnums=(3, 4, 5), donate_argnums=(0,))
    # lambda of the self-normalizing layers' reconstruction loss; None keeps the plain step
    reconstruction_weight = (float(config.get("reconstruction_weight", 0.0))
                             if mc.linear == "selfnorm" else None)
    writer = create_writer(workdir)
    start_step = int(state.step)
    if start_step >= config.num_steps:
        return state
    writer.write_texts(start_step, {"config": str(config)})
    local = config.batch_size // jax.process_count()
    started = time.time()
    guard = NonfiniteGuard(config.max_nonfinite_steps, manager, workdir,
                           "lower learning_rate or check the data")
    history = None
    for step in range(start_step, config.num_steps):
        batch = datasets.batch_at(train_images, config.batch_size, config.seed, step)
        batch = batch[jax.process_index() * local:(jax.process_index() + 1) * local]
        batch = jax.make_array_from_process_local_data(batch_sharding, batch)
        previous_nonfinite = int(state.nonfinite)
        state, step_metrics = step_fn(state, batch, jax.random.fold_in(step_rng, step), mc.n_bits,
                                      mc.dim, reconstruction_weight)
        history = step_metrics if history is None else history.merge(step_metrics)
        guard.check(previous_nonfinite, int(state.nonfinite), step)
        done = step + 1
        if done % config.log_every == 0 or done == config.num_steps:
            _log(writer, history, state, config, done, start_step, started)
            history = None
        if done % config.eval_every == 0 or done == config.num_steps:
            test_bpd = eval_bits_per_dim(model, state.params, eval_images, eval_rng)
            writer.write_scalars(done, {"eval_bits_per_dim": float(test_bpd.mean())})
        if config.get("diagnostics_every") and done % config.diagnostics_every == 0:
            x = to_model_input(jax.random.fold_in(eval_rng, done), batch, mc.n_bits)
            writer.write_scalars(done, {**diagnostics.summary(model, state.params, x),
                                        "diagnostics/nonfinite_total": int(state.nonfinite)})
        time_up = config.time_limit_minutes and time.time() - started > 60 * config.time_limit_minutes
        if done % config.checkpoint_every == 0 or done == config.num_steps or time_up:
            manager.save(done, args=ocp.args.StandardSave(state))
        if time_up:
            print(f"time limit of {config.time_limit_minutes} min reached at step {done}; "
                  "run the same command again to resume", flush=True)
            break
    manager.wait_until_finished()
    writer.flush()
    return state
