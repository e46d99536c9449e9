"""The exact-gradient twin of fmnist8_snf_cnn: autodiff through each convolution's Toeplitz slogdet.

Run: `nif-zoo train fmnist8_exact_cnn --workdir workdirs/fmnist8-exact-cnn`.
"""

from nif_zoo.configs import fmnist8_snf_cnn


def get_config():
    c = fmnist8_snf_cnn.get_config()
    c.model.linear = "exact"
    c.reconstruction_weight = 0.0
    return c
