"""A small Glow whose 1x1 convolutions are self-normalizing, on 8-bit Fashion-MNIST.

The paper's Glow-like MNIST model (575.4 nats, lambda 100): 2 levels of 16 steps (ActNorm,
self-normalizing 1x1 convolution, affine coupling of width 512), split priors, Adam 1e-3,
batch 100. Differs: a CPU-size 2 x 4 x 32 Glow, Fashion-MNIST, a short run.
Twin: fmnist8_exact_glow (full 1x1 kernels drawn the same way, gradient by autodiff).

Run: `nif-zoo train fmnist8_snf_glow --workdir workdirs/fmnist8-snf-glow` (1500 steps;
measured on one shared CPU core: 2.35 steps/s, about 11 minutes; the exact twin 2.8 steps/s:
with 4 to 8 channels the 1x1 slogdet is negligible and the reconstruction loss is not).
"""

from nif_zoo.configs import base


def get_config():
    c = base.get_config("fmnist", n_bits=8, logit_lambda=1e-6, steps=4, hidden=32, split="learned",
                        invconv="full", linear="selfnorm")
    c.update(batch_size=100, num_steps=1500, learning_rate=1e-3, warmup_steps=100,
             reconstruction_weight=100.0, init_batch_size=500, log_every=100, eval_every=500,
             eval_examples=2000, checkpoint_every=500)
    return c
