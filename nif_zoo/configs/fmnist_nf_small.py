"""fmnist-nf.small: a CPU-size Fashion-MNIST baseline flow (Glow 2 levels x 8 steps x 64 channels).

The same size as the public PyTorch Glow we compare with (rosinality/glow-pytorch 2x8x64, Adam
1e-3, batch 64), so test bits/dim can be set beside it at equal training time. Differs from the
paper's recipe: smaller Glow, Glow's learned split, Adam 1e-3 with 500 warm-up steps, batch 64.
Run: `nif-zoo train fmnist_nf_small --workdir workdirs/fmnist-nf.small`.
Expected: see model_cards/fmnist-nf.small.md (measured with `nif-zoo bench fmnist-nf.small`).
"""

from nif_zoo.configs import base


def get_config():
    return base.small_config(head="normal")
