"""The exact-gradient twin of fmnist8_snf_dense: the same run with autodiff through slogdet.

Run: `nif-zoo train fmnist8_exact_dense --workdir workdirs/fmnist8-exact-dense`.
"""

from nif_zoo.configs import fmnist8_snf_dense


def get_config():
    c = fmnist8_snf_dense.get_config()
    c.model.linear = "exact"
    c.reconstruction_weight = 0.0
    return c
