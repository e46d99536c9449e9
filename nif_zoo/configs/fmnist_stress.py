"""The stress test of the stability controls: the fmnist-nif64.small recipe at 10x its learning rate.

Run: `nif-zoo train fmnist_stress:off --workdir W_off` and `nif-zoo train fmnist_stress:on
--workdir W_on` (then `python -m benchmarks.stress W_off W_on`). `on` caps the coupling
networks' spectral norms at 1 and bounds the coupling log-scales to (-0.5, 0.5); `off` is the
recipe as published. Same seed, initialisation and data order; 1000 steps; diagnostics every
100 steps. Results: benchmarks/README.md, "Stability controls".
"""

from nif_zoo.configs import base


def get_config(controls: str = "off"):
    if controls not in ("on", "off"):
        raise ValueError(f"fmnist_stress takes 'on' or 'off', got {controls!r}")
    extra = dict(spectral_cap=1.0, max_log_scale=0.5) if controls == "on" else {}
    c = base.small_config(head="nif", latent_dim=64, **extra)
    c.update(learning_rate=1e-2, num_steps=1000, eval_every=500, diagnostics_every=100,
             max_nonfinite_steps=1000)
    return c
