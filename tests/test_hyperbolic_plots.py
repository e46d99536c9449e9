"""The Poincare-disk figure."""

import numpy as np
import pytest

from nif_zoo.hyperbolic.plots import poincare_disk
from nif_zoo.plots import PALETTE


def test_poincare_disk_draws_points_in_their_label_colours():
    points = np.array([[0.0, 0.0], [0.5, 0.5], [-0.9, 0.1]])
    image = poincare_disk(points, np.array([0, 1, 2]), ["a", "b", "c"], title="t", size=200)
    assert image.mode == "RGB" and image.height >= 200
    colours = {tuple(c) for c in np.asarray(image).reshape(-1, 3)}
    assert {PALETTE[0], PALETTE[1], PALETTE[2]} <= colours
    with pytest.raises(ValueError, match="points"):
        poincare_disk(points[:, :1], np.zeros(3), ["a"])
