"""fmnist-nif64, the paper's recipe. Run: `nif-zoo train fmnist_nif64 --workdir workdirs/fmnist-nif64`.

Expected: see the paper's table 2 and model_cards/fmnist-nif64.md (a recipe until weights exist).
"""

from nif_zoo.configs import base


def get_config():
    return base.get_config("fmnist", head="nif", latent_dim=64)
