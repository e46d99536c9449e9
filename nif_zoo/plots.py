"""PNG figures drawn with PIL alone: image grids, labelled sweep grids and line plots."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SEPARATOR = 255  # white lines between cells: the images are mostly dark backgrounds
MARGIN = 4
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
BACKGROUND, INK, GRID_LINE = (255, 255, 255), (0, 0, 0), (225, 225, 225)
MAX_POINTS_WITH_MARKERS = 30
FONT_SIZE = 12

Series = dict[str, tuple[Sequence[float], Sequence[float]]]


# --------------------------------------------------------------------------------------
# Image grids
# --------------------------------------------------------------------------------------


def image_grid(images: np.ndarray, rows: int, cols: int, scale: int = 2) -> Image.Image:
    """Tile uint8 images (N, H, W, C) with C 1 or 3 into ``rows`` x ``cols`` cells, row-major.

    Each image is enlarged ``scale`` times (nearest neighbour); cells are separated and framed
    by 1-pixel white lines, so the result is ``cols * (W * scale + 1) + 1`` pixels wide and
    ``rows * (H * scale + 1) + 1`` high. Cells beyond N stay white. Mode "L" or "RGB".
    """
    images = _check_images(images)
    if rows < 1 or cols < 1 or scale < 1:
        raise ValueError(f"rows, cols and scale must be positive, got {rows}, {cols}, {scale}")
    if len(images) > rows * cols:
        raise ValueError(f"{len(images)} images do not fit in {rows} x {cols} cells")
    n, height, width, channels = images.shape
    cell_h, cell_w = height * scale + 1, width * scale + 1
    canvas = np.full((rows * cell_h + 1, cols * cell_w + 1, channels), SEPARATOR, np.uint8)
    enlarged = images.repeat(scale, axis=1).repeat(scale, axis=2)
    for index in range(n):
        row, col = divmod(index, cols)
        top, left = 1 + row * cell_h, 1 + col * cell_w
        canvas[top:top + height * scale, left:left + width * scale] = enlarged[index]
    return Image.fromarray(canvas[..., 0] if channels == 1 else canvas, "L" if channels == 1
                           else "RGB")


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W, 1 or 3), got shape {images.shape}")
    return images


def sweep_grid(rows_of_images: Sequence[np.ndarray], row_labels: Sequence[str],
               title: str = "", scale: int = 2) -> Image.Image:
    """One row of images per setting, its label at the left and ``title`` on top; black on white."""
    if len(rows_of_images) != len(row_labels):
        raise ValueError(f"{len(rows_of_images)} rows but {len(row_labels)} labels")
    if not rows_of_images:
        raise ValueError("sweep_grid needs at least one row")
    rows = [_check_images(row) for row in rows_of_images]
    color = any(row.shape[-1] == 3 for row in rows)
    mode = "RGB" if color else "L"
    grids = [image_grid(row, 1, len(row), scale).convert(mode) for row in rows]
    font = _font()
    measure = ImageDraw.Draw(Image.new(mode, (1, 1)))
    label_w = max(_text_size(measure, label, font)[0] for label in row_labels) + 2 * MARGIN
    title_h = _text_size(measure, title, font)[1] + 2 * MARGIN if title else 0
    width = label_w + max(grid.width for grid in grids) + MARGIN
    width = max(width, _text_size(measure, title, font)[0] + 2 * MARGIN if title else 0)
    height = title_h + sum(grid.height + MARGIN for grid in grids) + MARGIN
    ink, paper = (INK, BACKGROUND) if color else (0, 255)
    canvas = Image.new(mode, (width, height), paper)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((MARGIN, MARGIN), title, fill=ink, font=font)
    top = title_h + MARGIN
    for grid, label in zip(grids, row_labels, strict=True):
        canvas.paste(grid, (label_w, top))
        text_h = _text_size(measure, label, font)[1]
        draw.text((MARGIN, top + (grid.height - text_h) // 2), label, fill=ink, font=font)
        top += grid.height + MARGIN
    return canvas


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's default font, at a readable size where PIL has FreeType (a bitmap font otherwise)."""
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except (ImportError, OSError):
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    if not text:
        return 0, 0
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right, bottom  # from the origin, so offsets above the glyphs count too


# --------------------------------------------------------------------------------------
# Line plots
# --------------------------------------------------------------------------------------


def line_plot(series: Series, title: str = "", xlabel: str = "", ylabel: str = "",
              size: tuple[int, int] = (640, 400)) -> Image.Image:
    """Coloured lines of ``{name: (xs, ys)}`` with axes, numbered ticks and a legend (RGB).

    Non-finite points break a line; series of at most 30 points also get markers.
    """
    width, height = size
    if width < 200 or height < 150:
        raise ValueError(f"size must be at least 200 x 150, got {size}")
    font = _font()
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    cleaned = {name: _finite_points(xs, ys, name) for name, (xs, ys) in series.items()}
    x_ticks = _nice_ticks(*_data_range([p[0] for p in cleaned.values()]))
    y_ticks = _nice_ticks(*_data_range([p[1] for p in cleaned.values()]))
    y_labels = [_tick_label(v, y_ticks) for v in y_ticks]
    text_h = _text_size(draw, "0123456789", font)[1]
    left = max(_text_size(draw, label, font)[0] for label in y_labels) + 3 * MARGIN + 6
    left += text_h + MARGIN if ylabel else 0
    top = text_h + 3 * MARGIN if title else 2 * MARGIN
    right = width - 4 * MARGIN
    bottom = height - (2 * text_h + 5 * MARGIN + 6 if xlabel else text_h + 3 * MARGIN + 6)
    box = (left, top, right, bottom)

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        fx = (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0])
        fy = (y - y_ticks[0]) / (y_ticks[-1] - y_ticks[0])
        return left + fx * (right - left), bottom - fy * (bottom - top)

    _draw_axes(draw, font, box, x_ticks, y_ticks, y_labels, to_pixel)
    for index, (xs, ys) in enumerate(cleaned.values()):
        _draw_series(draw, xs, ys, PALETTE[index % len(PALETTE)], to_pixel)
    draw.rectangle(box, outline=INK)
    _draw_labels(image, draw, font, title, xlabel, ylabel, box, text_h)
    pixels = [to_pixel(x, y) for xs, ys in cleaned.values() for x, y in _densified(xs, ys)]
    _draw_legend(draw, font, list(cleaned), box, pixels)
    return image


def _finite_points(xs: Sequence[float], ys: Sequence[float],
                   name: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.asarray(xs, np.float64).ravel(), np.asarray(ys, np.float64).ravel()
    if xs.shape != ys.shape:
        raise ValueError(f"series {name!r} has {xs.size} x values but {ys.size} y values")
    broken = ~(np.isfinite(xs) & np.isfinite(ys))
    return np.where(broken, np.nan, xs), np.where(broken, np.nan, ys)


def _densified(xs: np.ndarray, ys: np.ndarray, per_segment: int = 16) -> np.ndarray:
    """Points along every drawn segment, so a legend placed to avoid them avoids the lines."""
    fractions = np.linspace(0.0, 1.0, per_segment, endpoint=False)[:, None]
    starts = np.stack([xs[:-1], ys[:-1]], axis=1)
    ends = np.stack([xs[1:], ys[1:]], axis=1)
    along = (starts[None] + fractions[..., None] * (ends - starts)[None]).reshape(-1, 2)
    points = np.concatenate([along, np.stack([xs, ys], axis=1)])
    return points[np.isfinite(points).all(axis=1)]


def _data_range(arrays: list[np.ndarray]) -> tuple[float, float]:
    finite = [a[np.isfinite(a)] for a in arrays]
    finite = np.concatenate(finite) if finite else np.zeros(0)
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if high - low <= 1e-12 * max(1.0, abs(high)):
        pad = max(abs(high) * 0.1, 1.0)
        return low - pad, high + pad
    return low, high


def _nice_ticks(low: float, high: float, target: int = 6) -> np.ndarray:
    """Round tick values (1, 2 or 5 times a power of ten apart) spanning ``[low, high]``."""
    raw = (high - low) / target
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first, last = math.floor(low / step), math.ceil(high / step)
    return np.arange(first, last + 1) * step


def _tick_label(value: float, ticks: np.ndarray) -> str:
    step = float(ticks[1] - ticks[0])
    largest = float(np.max(np.abs(ticks)))
    if largest >= 1e5 or step < 1e-4:
        return f"{value:.3g}"
    decimals = max(0, -math.floor(math.log10(step)))
    return f"{value:.{decimals}f}"


def _draw_axes(draw, font, box, x_ticks, y_ticks, y_labels, to_pixel) -> None:
    left, top, right, bottom = box
    for value in x_ticks:
        x = to_pixel(value, y_ticks[0])[0]
        draw.line([(x, top), (x, bottom)], fill=GRID_LINE)
        draw.line([(x, bottom), (x, bottom + 5)], fill=INK)
        label = _tick_label(value, x_ticks)
        label_w = _text_size(draw, label, font)[0]
        draw.text((x - label_w / 2, bottom + 6 + MARGIN), label, fill=INK, font=font)
    for value, label in zip(y_ticks, y_labels, strict=True):
        y = to_pixel(x_ticks[0], value)[1]
        draw.line([(left, y), (right, y)], fill=GRID_LINE)
        draw.line([(left - 5, y), (left, y)], fill=INK)
        label_w, label_h = _text_size(draw, label, font)
        draw.text((left - 6 - MARGIN - label_w, y - label_h / 2), label, fill=INK, font=font)


def _draw_series(draw, xs: np.ndarray, ys: np.ndarray, color, to_pixel) -> None:
    points = [to_pixel(x, y) if np.isfinite(x) else None for x, y in zip(xs, ys, strict=True)]
    segment: list[tuple[float, float]] = []
    for point in [*points, None]:
        if point is not None:
            segment.append(point)
            continue
        if len(segment) > 1:
            draw.line(segment, fill=color, width=2, joint="curve")
        segment = []
    if len(xs) <= MAX_POINTS_WITH_MARKERS:
        for point in points:
            if point is not None:
                x, y = point
                draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=color)


def _draw_labels(image, draw, font, title, xlabel, ylabel, box, text_h) -> None:
    left, top, right, bottom = box
    if title:
        title_w = _text_size(draw, title, font)[0]
        draw.text(((left + right - title_w) / 2, MARGIN), title, fill=INK, font=font)
    if xlabel:
        label_w = _text_size(draw, xlabel, font)[0]
        draw.text(((left + right - label_w) / 2, image.height - text_h - 2 * MARGIN), xlabel,
                  fill=INK, font=font)
    if ylabel:
        label_w, label_h = _text_size(draw, ylabel, font)
        strip = Image.new("RGB", (label_w + 2, label_h + 2), BACKGROUND)
        ImageDraw.Draw(strip).text((1, 1), ylabel, fill=INK, font=font)
        rotated = strip.rotate(90, expand=True)
        image.paste(rotated, (MARGIN, int((top + bottom - rotated.height) / 2)))


def _draw_legend(draw, font, names: list[str], box, pixels: list[tuple[float, float]]) -> None:
    """Frame the legend in whichever inner corner of the plot covers the fewest line points."""
    if not names:
        return
    left, top, right, bottom = box
    swatch = 18
    text_w = max(_text_size(draw, name, font)[0] for name in names)
    line_h = max(_text_size(draw, name, font)[1] for name in [*names, "Hg"]) + MARGIN
    legend_w = swatch + 4 * MARGIN + text_w
    legend_h = len(names) * line_h + 2 * MARGIN
    corners = [(right - legend_w - MARGIN, top + MARGIN), (left + MARGIN, top + MARGIN),
               (right - legend_w - MARGIN, bottom - legend_h - MARGIN),
               (left + MARGIN, bottom - legend_h - MARGIN)]

    def covered(corner: tuple[float, float]) -> int:
        x0, y0 = corner
        return sum(x0 <= x <= x0 + legend_w and y0 <= y <= y0 + legend_h for x, y in pixels)

    x0, y0 = min(corners, key=covered)  # min keeps the first (top right) among ties
    draw.rectangle((x0, y0, x0 + legend_w, y0 + legend_h), fill=BACKGROUND, outline=INK)
    for index, name in enumerate(names):
        text_top = y0 + MARGIN + index * line_h
        y = text_top + (line_h - MARGIN) / 2
        color = PALETTE[index % len(PALETTE)]
        draw.line([(x0 + MARGIN, y), (x0 + MARGIN + swatch, y)], fill=color, width=3)
        draw.text((x0 + 2 * MARGIN + swatch, text_top), name, fill=INK, font=font)


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write ``image`` as a PNG via a temporary file in the same folder and ``os.replace``.

    Readers see the old file or the complete new one, never a partial PNG.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            image.save(file, format="PNG")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
