"""cifar10-nif128, the paper's recipe. Run: `nif-zoo train cifar10_nif128 --workdir workdirs/cifar10-nif128`.

Expected: see the paper's table 2 and model_cards/cifar10-nif128.md (a recipe until weights exist).
"""

from nif_zoo.configs import base


def get_config():
    return base.get_config("cifar10", head="nif", latent_dim=128)
