"""cifar10-nf, the paper's recipe. Run: `nif-zoo train cifar10_nf --workdir workdirs/cifar10-nf`.

Expected: see the paper's table 2 and model_cards/cifar10-nf.md (a recipe until weights exist).
"""

from nif_zoo.configs import base


def get_config():
    return base.get_config("cifar10")
