"""nif_zoo: a model zoo of noisy injective flows."""
