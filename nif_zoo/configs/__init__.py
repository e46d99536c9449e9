"""Training configs: ``get_config()`` functions returning an ``ml_collections.ConfigDict``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import ml_collections

CONFIG_DIR = Path(__file__).resolve().parent


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Loads ``path/to/config.py`` or a config name in this folder (``fmnist_nif64``).

    ``spec`` may end in ``:ARG``, passed to ``get_config(ARG)``.
    """
    spec, _, arg = spec.partition(":")
    path = Path(spec)
    if not path.suffix:
        path = CONFIG_DIR / f"{spec}.py"
    elif not path.is_file() and (CONFIG_DIR / path.name).is_file():
        path = CONFIG_DIR / path.name  # "nif_zoo/configs/x.py" from outside the repository
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))
        raise FileNotFoundError(f"no config file {path}; give a path or one of: {', '.join(known)}")
    module_spec = importlib.util.spec_from_file_location(f"nif_zoo_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()
