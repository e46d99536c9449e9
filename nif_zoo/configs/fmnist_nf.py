"""fmnist-nf, the paper's recipe. Run: `nif-zoo train fmnist_nf --workdir workdirs/fmnist-nf`.

Expected: see the paper's table 2 and model_cards/fmnist-nf.md (a recipe until weights exist).
"""

from nif_zoo.configs import base


def get_config():
    return base.get_config("fmnist")
