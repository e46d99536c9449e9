"""celeba-nf, the paper's recipe. Run: `nif-zoo train celeba_nf --workdir workdirs/celeba-nf`.

Expected: see the paper's table 2 and model_cards/celeba-nf.md (a recipe until weights exist).
"""

from nif_zoo.configs import base


def get_config():
    return base.get_config("celeba")
