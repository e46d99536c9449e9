import numpy as np
import pytest
from PIL import Image

from nif_zoo import plots


def test_image_grid_size_and_pixel_placement():
    images = np.zeros((5, 3, 4, 1), np.uint8)
    for i in range(5):
        images[i] = 10 * (i + 1)
    grid = plots.image_grid(images, rows=2, cols=3, scale=2)
    assert grid.mode == "L"
    assert grid.size == (3 * (4 * 2 + 1) + 1, 2 * (3 * 2 + 1) + 1)
    pixels = np.asarray(grid)
    # Image 4 (row 1, col 1) covers a 6x8 block starting after the separators.
    top, left = 1 + 1 * (3 * 2 + 1), 1 + 1 * (4 * 2 + 1)
    assert np.all(pixels[top:top + 6, left:left + 8] == 50)
    assert np.all(pixels[0] == plots.SEPARATOR)  # frame
    assert np.all(pixels[:, left - 1] == plots.SEPARATOR)  # separator column
    assert np.all(pixels[top:top + 6, 1 + 2 * 9:1 + 2 * 9 + 8] == plots.SEPARATOR)  # empty cell


def test_image_grid_rgb_and_errors():
    images = np.zeros((2, 5, 5, 3), np.uint8)
    images[1, ..., 0] = 200
    grid = plots.image_grid(images, rows=1, cols=2, scale=1)
    assert grid.mode == "RGB" and grid.size == (13, 7)
    assert grid.getpixel((7, 1)) == (200, 0, 0)
    with pytest.raises(ValueError):
        plots.image_grid(images, rows=1, cols=1)
    with pytest.raises(TypeError):
        plots.image_grid(images.astype(np.float32), rows=1, cols=2)


def test_sweep_grid_places_rows_below_the_title_with_labels():
    rows = [np.full((4, 6, 6, 1), v, np.uint8) for v in (0, 100)]
    image = plots.sweep_grid(rows, ["s = 0.0", "s = 1.0"], title="sweep", scale=2)
    grid_w = 4 * (6 * 2 + 1) + 1
    assert image.mode == "L"
    assert image.width > grid_w and image.height > 2 * (6 * 2 + 2)
    pixels = np.asarray(image)
    assert np.sum(pixels == 100) == 4 * 12 * 12
    assert np.sum(pixels[:, :image.width - grid_w - 4] < 128) > 0  # label text at the left
    with pytest.raises(ValueError):
        plots.sweep_grid(rows, ["only one label"])


def test_line_plot_has_the_requested_size_and_draws_lines():
    xs = np.arange(50)
    image = plots.line_plot({"train": (xs, np.exp(-xs / 10)), "val": (xs, np.exp(-xs / 12))},
                            "curve", "step", "loss", size=(500, 300))
    assert image.size == (500, 300)
    pixels = np.asarray(image).reshape(-1, 3)
    assert np.any(np.all(pixels == plots.PALETTE[0], axis=1))
    assert np.any(np.all(pixels == plots.PALETTE[1], axis=1))
    assert np.mean(np.any(pixels != plots.BACKGROUND, axis=1)) > 0.02


def test_line_plot_tolerates_gaps_constants_and_no_data():
    image = plots.line_plot({"flat": ([0, 1, 2], [3.0, np.nan, 3.0])}, "t", "x", "y")
    assert image.size == (640, 400)
    assert plots.line_plot({}, size=(300, 200)).size == (300, 200)


def test_nice_ticks_span_the_data_with_round_steps():
    ticks = plots._nice_ticks(0.13, 9.7)
    assert ticks[0] <= 0.13 and ticks[-1] >= 9.7
    assert np.allclose(np.diff(ticks), 2.0)


def test_save_png_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "figure.png"
    plots.save_png(Image.new("L", (4, 3), 7), path)
    with Image.open(path) as reloaded:
        assert reloaded.size == (4, 3)
    before = path.read_bytes()

    def broken_save(self, fp, format=None, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        plots.save_png(Image.new("L", (8, 8), 1), path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["figure.png"]
