"""fmnist-nif64.small: a CPU-size Fashion-MNIST NIF-64 (Glow 2 levels x 8 steps x 64 channels).

The same size as the public PyTorch Glow we compare with (rosinality/glow-pytorch 2x8x64, Adam
1e-3, batch 64), so test bits/dim can be set beside it at equal training time. Differs from the
paper's recipe: smaller Glow, Glow's learned split, Adam 1e-3 with 500 warm-up steps, batch 64.
Run: `nif-zoo train fmnist_nif64_small --workdir workdirs/fmnist-nif64.small`.
Expected: see model_cards/fmnist-nif64.small.md (measured with `nif-zoo bench fmnist-nif64.small`).
"""

from nif_zoo.configs import base


def get_config():
    return base.small_config(head="nif", latent_dim=64)
