"""The paper's recipe (math note, "The paper's recipe"), shared by every zoo config.

Adam 1e-4 with 10k linear warm-up steps, batch 32, global-norm clipping at 5.0, 3-bit data,
logit lambda 0.05, Glow with 16 steps and 256 channels per level, the authors' exp(tanh)
coupling scale and pass-through factor-out.
"""

from __future__ import annotations

import ml_collections

from nif_zoo.config import ModelConfig

DATASETS = {
    "fmnist": dict(data="fmnist", image_shape=(28, 28, 1), levels=2),
    "cifar10": dict(data="cifar10:data/cifar10", image_shape=(32, 32, 3), levels=4),
    "celeba": dict(data="celeba:data/celeba/img_align_celeba", image_shape=(64, 64, 3), levels=5),
}


def get_config(dataset: str = "fmnist", head: str = "normal", latent_dim: int = 0,
               **model_overrides) -> ml_collections.ConfigDict:
    spec = DATASETS[dataset]
    model = ModelConfig(image_shape=spec["image_shape"], levels=spec["levels"], n_bits=3,
                        logit_lambda=0.05, steps=16, hidden=256, scale_fn="exp_tanh",
                        split="passthrough", head=head, latent_dim=latent_dim)
    model = model.replace(**model_overrides)
    c = ml_collections.ConfigDict()
    c.model = model.to_dict()
    c.data = spec["data"]
    c.train_split = "train"
    c.eval_split = "test"
    c.seed = 0
    c.batch_size = 32
    c.num_steps = 150_000
    c.learning_rate = 1e-4
    c.warmup_steps = 10_000
    c.grad_clip = 5.0
    c.init_batch_size = 1000  # ActNorm statistics from about 1000 examples, as the authors did
    c.log_every = 100
    c.diagnostics_every = 1000  # per-layer log-det ranges, 1x1 singular values (0: never)
    c.eval_every = 5000
    c.eval_examples = 1000
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3
    c.max_nonfinite_steps = 20
    c.time_limit_minutes = 0.0  # 0: no limit; else stop (with a checkpoint) after this long
    c.init_from = ""  # a zoo name, hf-hub: reference or directory to fine-tune from
    c.reinit_head = False  # with init_from: keep the backbone, start a fresh head
    c.reconstruction_weight = 0.0  # lambda of self-normalizing layers' ||x - R W x||^2 (nats/example)
    return c


def small_config(**model_overrides) -> ml_collections.ConfigDict:
    """The CPU-size Fashion-MNIST recipe shared by the ``*.small`` zoo entries.

    Glow 2 levels x 8 steps x 64 channels: the size of the public PyTorch Glow we compare with
    (rosinality/glow-pytorch 2x8x64, Adam 1e-3, batch 64), so test bits/dim can stand beside it.
    Differs from the paper's recipe: smaller Glow, Glow's learned split, Adam 1e-3 with 500
    warm-up steps, batch 64.
    """
    c = get_config("fmnist", steps=8, hidden=64, split="learned", **model_overrides)
    c.update(batch_size=64, num_steps=20_000, learning_rate=1e-3, warmup_steps=500,
             init_batch_size=512, log_every=50, eval_every=1000, eval_examples=2000,
             checkpoint_every=250)
    return c
