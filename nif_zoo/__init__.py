"""nif_zoo: a Flax model zoo of noisy injective flows (normalizing flows across dimensions).

>>> model = nif_zoo.load("fmnist-nif64.small")
>>> images = model.sample(jax.random.key(0), 16, t=0.7, s=0.0)
"""

from nif_zoo.config import ModelConfig
from nif_zoo.hub import push_folder as push_to_hub
from nif_zoo.pretrained import Pretrained, create, load, save_pretrained
from nif_zoo.registry import info, list_models

__all__ = ["ModelConfig", "Pretrained", "create", "info", "list_models", "load", "push_to_hub",
           "save_pretrained"]
__version__ = "0.1.0"
