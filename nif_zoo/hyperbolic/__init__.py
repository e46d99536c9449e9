"""Hyperbolic normalizing flows (Bose et al., ICML 2020) and VAEs with a latent on H^n.

- ``lorentz``: the Lorentz model with radius R (products, maps, transport, projection, checks);
- ``wrapped_normal``: sampling and log-density of the wrapped normal;
- ``couplings``: tangent (TC) and wrapped hyperboloid (WHC) couplings, and the Euclidean twin's;
- ``vae``, ``config``: the VAE and its architecture; ``pretrained``: what ``nif_zoo.load`` returns;
- ``branching_diffusion``, ``data``: the synthetic tree dataset and Fashion-MNIST as rows;
- ``train``: ``python -m nif_zoo.hyperbolic.train --dataset bdp --latent 2 --posterior whc --workdir W``;
- ``bench``, ``cards``, ``publish``: what ``nif-zoo bench`` and ``nif-zoo publish`` do for these models.
"""
