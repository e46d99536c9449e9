"""A tiny Fashion-MNIST NIF for tests: a few seconds per hundred steps on a CPU core.

Run: `nif-zoo train tiny --workdir /tmp/tiny`. Expected: bits/dim falls from ~3 within 50 steps.
"""

from nif_zoo.configs import base


def get_config(head: str = "nif"):
    c = base.get_config("fmnist", head=head, latent_dim=16 if head != "normal" else 0,
                        steps=2, hidden=16, prior_layers=2, prior_hidden=16)
    c.update(batch_size=16, num_steps=20, learning_rate=1e-3, warmup_steps=5, init_batch_size=64,
             log_every=5, eval_every=10, eval_examples=64, checkpoint_every=10)
    return c
