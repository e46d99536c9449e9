"""Self Normalizing Flows' 9-layer CNN on 8-bit Fashion-MNIST, trained self-normalized.

The paper's MNIST model (638.6 nats): 3 blocks of 3 convolutions 3x3 with a squeeze between
blocks, logit with alpha 1e-6, batch 100, Adam 1e-3, lambda 1. Differs: smooth leaky ReLUs in
place of the learned splines, Fashion-MNIST, a CPU-size run. Log-det values stay exact (dense
784 x 784 Toeplitz slogdet per layer, no gradient through it). Twin: fmnist8_exact_cnn.

Run: `nif-zoo train fmnist8_snf_cnn --workdir workdirs/fmnist8-snf-cnn` (1000 steps;
measured on one shared CPU core: 1.75 steps/s, about 10 minutes; the exact twin 1.18 steps/s,
about 14 minutes).
"""

from nif_zoo.configs import base


def get_config():
    c = base.get_config("fmnist", n_bits=8, logit_lambda=1e-6, backbone="cnn", levels=3, steps=3,
                        linear="selfnorm")
    c.update(batch_size=100, num_steps=1000, learning_rate=1e-3, warmup_steps=100,
             reconstruction_weight=1.0, init_batch_size=100, log_every=100, eval_every=250,
             eval_examples=2000, checkpoint_every=250)
    return c
