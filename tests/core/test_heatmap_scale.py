"""The heatmap's colour scale per frame: the card's range for quiet maps, stretched to the
frame's peak when the map rises above it (see inspector/core/heatmap.py)."""

from __future__ import annotations

import numpy as np

from inspector.core.card import HeatmapSpec
from inspector.core.heatmap import colorize, frame_scale

SPEC = HeatmapSpec(vmin=10.0, vmax=20.0)
DARK_RED = (128, 0, 0)


def test_a_quiet_map_keeps_the_cards_scale() -> None:
    amap = np.full((8, 8), 12.0, np.float32)
    amap[2, 2] = 18.0
    assert frame_scale(amap, SPEC) == (10.0, 20.0)
    colour = colorize(amap, SPEC)
    assert not (colour == DARK_RED).all(-1).any(), "noise below vmax never reaches red"


def test_a_map_above_vmax_everywhere_is_red_only_at_its_peak() -> None:
    amap = np.full((16, 16), 40.0, np.float32)  # every pixel above vmax
    amap[4:6, 10:12] = 90.0
    assert frame_scale(amap, SPEC) == (10.0, 90.0)
    colour = colorize(amap, SPEC)
    red = (colour == DARK_RED).all(-1)
    assert red[4:6, 10:12].all() and red.sum() == 4


def test_non_finite_values_do_not_set_the_scale() -> None:
    amap = np.array([[11.0, np.nan], [np.inf, 30.0]], np.float32)
    assert frame_scale(amap, SPEC) == (10.0, 30.0)
