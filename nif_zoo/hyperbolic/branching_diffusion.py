"""The synthetic branching-diffusion dataset of Mathieu et al. 2019, as Bose et al. 2020 used it.

A tree grows from the root (all zeros in R^dim) breadth first: every node above ``depth`` has
``children`` children, each its parent plus Gaussian noise of variance ``sigma`` (divided by
``decay ** depth``); every node, root and leaves included, emits ``siblings`` noisy copies of
variance ``sigma / (sibling_factor * decay ** depth)``. The dataset is the noisy copies only,
standardised per dimension, labelled with the depth of the node they copy. Defaults are the
paper's: dim 50, depth 5, 2 children, 5 siblings, sigma 1, no decay, sibling factor 10, which
gives 63 nodes and 315 points. Seeded with numpy's ``default_rng`` (the authors used the global
numpy state, so the draws differ but the distribution is the same).
"""

from __future__ import annotations

import numpy as np

TRAIN_FRACTION = 0.7  # the authors' random 70/30 split


def generate(seed: int = 0, dim: int = 50, depth: int = 5, children: int = 2, siblings: int = 5,
             sigma: float = 1.0, decay: float = 1.0, sibling_factor: float = 10.0
             ) -> tuple[np.ndarray, np.ndarray]:
    """``(points, depths)``: float32 ``(N, dim)`` standardised data and int ``(N,)`` node depths."""
    rng = np.random.default_rng(seed)
    queue = [(np.zeros(dim), 0)]
    points, depths = [], []
    while queue:
        node, level = queue.pop(0)
        if level < depth:
            std = np.sqrt(sigma / decay**level)
            queue.extend((node + rng.normal(size=dim) * std, level + 1) for _ in range(children))
        std = np.sqrt(sigma / (sibling_factor * decay**level))
        points.extend(node + rng.normal(size=dim) * std for _ in range(siblings))
        depths.extend([level] * siblings)
    data = np.stack(points)
    data = (data - data.mean(0)) / data.std(0)
    return data.astype(np.float32), np.asarray(depths, np.int64)


def load(split: str = "train", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The paper's dataset and a seeded 70/30 train/test split: ``(points, depths)``."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    points, depths = generate(seed)
    if split == "all":
        return points, depths
    order = np.random.default_rng(seed + 1).permutation(len(points))
    cut = int(len(points) * TRAIN_FRACTION)
    rows = order[:cut] if split == "train" else order[cut:]
    return points[rows], depths[rows]
