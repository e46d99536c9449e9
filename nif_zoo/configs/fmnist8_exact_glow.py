"""The exact-gradient twin of fmnist8_snf_glow: full 1x1 kernels trained through slogdet.

Run: `nif-zoo train fmnist8_exact_glow --workdir workdirs/fmnist8-exact-glow`.
"""

from nif_zoo.configs import fmnist8_snf_glow


def get_config():
    c = fmnist8_snf_glow.get_config()
    c.model.linear = "exact"
    c.reconstruction_weight = 0.0
    return c
