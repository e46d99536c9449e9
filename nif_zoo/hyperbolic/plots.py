"""The Poincare-disk picture of a 2-dimensional hyperbolic latent, drawn with PIL alone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from nif_zoo.plots import BACKGROUND, GRID_LINE, INK, MARGIN, PALETTE, _font, _text_size

DOT_RADIUS = 2


def poincare_disk(points: np.ndarray, labels: np.ndarray, label_names: Sequence[str], title: str = "",
                  size: int = 480) -> Image.Image:
    """Points of the unit disk (Poincare coordinates divided by R) coloured by integer label.

    Grey circles mark the geodesic distances R, 2R, 3R and 4R from the origin (Euclidean radius
    ``tanh(d / 2R)`` in the unit disk), so that distances from the origin can be read off.
    """
    points, labels = np.asarray(points, np.float64), np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"need (N, 2) points and N labels, got {points.shape} and {labels.shape}")
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_h = _text_size(measure, title, font)[1] + 2 * MARGIN if title else 0
    legend_w = max(_text_size(measure, name, font)[0] for name in label_names) + 6 * MARGIN
    canvas = Image.new("RGB", (size + legend_w, size + title_h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((MARGIN, MARGIN), title, fill=INK, font=font)
    half = (size - 2 * MARGIN) / 2
    cx, cy = MARGIN + half, title_h + MARGIN + half
    for distance in (1, 2, 3, 4):
        r = half * np.tanh(distance / 2)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=GRID_LINE)
    draw.ellipse((cx - half, cy - half, cx + half, cy + half), outline=INK)
    order = np.random.default_rng(0).permutation(len(points))  # no class drawn wholly on top
    for (x, y), label in zip(points[order], labels[order], strict=True):
        px, py = cx + half * x, cy - half * y
        draw.ellipse((px - DOT_RADIUS, py - DOT_RADIUS, px + DOT_RADIUS, py + DOT_RADIUS),
                     fill=PALETTE[int(label) % len(PALETTE)])
    top = title_h + MARGIN
    for index, name in enumerate(label_names):
        y = top + index * (_text_size(measure, "Ag", font)[1] + MARGIN)
        draw.rectangle((size, y + 2, size + 8, y + 10), fill=PALETTE[index % len(PALETTE)])
        draw.text((size + 12, y), name, fill=INK, font=font)
    return canvas


def latent_figure(model, title: str) -> Image.Image:
    """A 2-d hyperbolic model's latent means on the Poincare disk: Fashion-MNIST's first 2000 test
    images coloured by class, or every branching-diffusion point coloured by tree depth.
    """
    from nif_zoo.hyperbolic import data

    if model.config.latent != 2 or not model.config.hyperbolic:
        raise ValueError(f"the Poincare disk shows 2-d hyperbolic latents, not {model.config.latent}-d "
                         f"{model.config.posterior} ones")
    if model.config.dataset == "bdp":
        rows, labels = data.load("bdp", "all")
        names = [f"depth {d}" for d in range(int(labels.max()) + 1)]
    else:
        rows, labels = data.load("fmnist", "test")
        rows, labels = rows[:2000], labels[:2000]
        names = list(data.FMNIST_CLASSES)
    disk = np.asarray(model.to_poincare(model.encode(rows))) / model.radius
    return poincare_disk(disk, labels, names, f"{title} (R = {model.radius:.3g})")
