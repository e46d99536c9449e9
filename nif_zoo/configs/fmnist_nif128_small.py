"""fmnist-nif128.small, the CPU-size Fashion-MNIST NIF-128 (recipe: `base.small_config`).

Run: `nif-zoo train fmnist_nif128_small --workdir workdirs/fmnist-nif128.small`. Expected: the
figures of model_cards/fmnist-nif128.small.md (`nif-zoo bench fmnist-nif128.small`).
"""

from nif_zoo.configs import base


def get_config():
    return base.small_config(head="nif", latent_dim=128)
