"""celeba-nif128, the paper's recipe. Run: `nif-zoo train celeba_nif128 --workdir workdirs/celeba-nif128`.

Expected: see the paper's table 2 and model_cards/celeba-nif128.md (a recipe until weights exist).
"""

from nif_zoo.configs import base


def get_config():
    return base.get_config("celeba", head="nif", latent_dim=128)
