"""fmnist-nif64.small, the CPU-size Fashion-MNIST NIF-64 (recipe: `base.small_config`).

Run: `nif-zoo train fmnist_nif64_small --workdir workdirs/fmnist-nif64.small`. Expected: the
figures of model_cards/fmnist-nif64.small.md (`nif-zoo bench fmnist-nif64.small`).
"""

from nif_zoo.configs import base


def get_config():
    return base.small_config(head="nif", latent_dim=64)
