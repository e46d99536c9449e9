"""fmnist-nf.small, the CPU-size Fashion-MNIST NF baseline (recipe: `base.small_config`).

Run: `nif-zoo train fmnist_nf_small --workdir workdirs/fmnist-nf.small`. Expected: the
figures of model_cards/fmnist-nf.small.md (`nif-zoo bench fmnist-nf.small`).
"""

from nif_zoo.configs import base


def get_config():
    return base.small_config(head="normal")
