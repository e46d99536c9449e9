"""Self Normalizing Flows' 2-layer dense flow on 8-bit Fashion-MNIST, trained self-normalized.

The paper's MNIST model (Keller et al. 2021, 947.1 nats): two 784 x 784 linear layers with a
smooth leaky ReLU between, logit with alpha 1e-6, batch 100, Adam, lambda 1. Differs: Fashion-
MNIST, a CPU-size run. Twin: fmnist8_exact_dense (same seed, data order and initialisation).

Run: `nif-zoo train fmnist8_snf_dense --workdir workdirs/fmnist8-snf-dense` (6000 steps, 10
epochs; measured on one shared CPU core: 7.7 steps/s, about 13 minutes; the exact twin 11.4
steps/s: at D = 784 and batch 100 the O(D^3) LU costs no more than the extra O(B D^2) products).
Compare eval_bits_per_dim with the twin's at the same step.
"""

from nif_zoo.configs import base


def get_config():
    c = base.get_config("fmnist", n_bits=8, logit_lambda=1e-6, backbone="dense", steps=2,
                        linear="selfnorm")
    c.update(batch_size=100, num_steps=6000, learning_rate=1e-4, warmup_steps=100,
             reconstruction_weight=1.0, init_batch_size=100, log_every=100, eval_every=1500,
             eval_examples=2000, checkpoint_every=1500)
    return c
