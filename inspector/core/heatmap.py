"""Anomaly heatmaps as a colour overlay on the original frame.

Colour scale, per frame: blue at the card's `heatmap.vmin` (the median good pixel), red at the
larger of the card's `heatmap.vmax` and the frame's own peak. So

- a frame whose map stays below `vmax` (a good part) is drawn on the card's fixed scale: its
  noise stays blue-green and never lights up, and two good frames compare colour for colour;
- a frame whose map rises above `vmax` is stretched until its most anomalous region, and only
  that region, is red. The card's range is the floor of the scale, never the ceiling.

Why not the fixed card scale alone: it saturates. A small model (the demo's, trained in seconds)
or a large defect lifts the whole map of a failed frame above `vmax` (the defect's features
reach every patch through the backbone's receptive field), and a fixed scale then paints the
frame one uniform red that says "bad" but not where. Why not a scale calibrated on validation
defects at training time: anomaly models train on goods only and most data sets have few or no
defects to calibrate on, and a fixed scale from any data still saturates on a defect stronger
than those seen. The rule above needs nothing but the map in hand, keeps the card's meaning for
good frames, and is continuous (a frame just above `vmax` looks as it did before). What it
gives up: across two failed frames, red means "this frame's worst", not one absolute value; the
score and threshold beside the frame carry the absolute figure.
"""

from __future__ import annotations

import cv2
import numpy as np

from inspector.core.card import HeatmapSpec, InputSpec
from inspector.core.preprocess import Geometry, map_to_frame

#: Longest side, in pixels, of the heatmap overlays the server draws and stores. A larger frame is
#: first downscaled (area interpolation, aspect ratio kept), so mapping the anomaly map back,
#: colouring, blending and JPEG-encoding cost O(2048^2) memory and time, not O(frame): a 50 Mpx
#: PNG would otherwise need about 14 more bytes per pixel for its overlay alone. The review pages
#: scale both the frame and its overlay to the same box by CSS, so the smaller overlay still lies
#: exactly over the frame. `inspector inspect --heatmaps` keeps full-size overlays.
SERVER_MAX_SIDE = 2048


def bounded_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) scaled down so the longer side is at most `max_side` (aspect ratio kept,
    rounded, each side at least 1); unchanged when it already fits or `max_side` is None."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, min(max_side, round(width * scale))), max(1, min(max_side, round(height * scale)))


def frame_scale(amap: np.ndarray, spec: HeatmapSpec) -> tuple[float, float]:
    """(low, high) of the colour scale for one map: (vmin, max(vmax, the map's peak)); see the
    module docstring. Non-finite values are ignored."""
    finite = amap[np.isfinite(amap)]
    peak = float(finite.max()) if finite.size else spec.vmax
    return spec.vmin, max(spec.vmax, peak)


def colorize(amap: np.ndarray, spec: HeatmapSpec) -> np.ndarray:
    """Map anomaly values to RGB (COLORMAP_JET) on the frame's scale (`frame_scale`): vmin ->
    blue, the larger of vmax and the map's peak -> red."""
    low, high = frame_scale(amap, spec)
    norm = (amap.astype(np.float32) - low) / (high - low)
    gray = np.clip(norm * 255.0, 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(gray, cv2.COLORMAP_JET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(
    frame_rgb: np.ndarray,
    amap: np.ndarray,
    geometry: Geometry,
    input_spec: InputSpec,
    spec: HeatmapSpec,
    alpha: float | None = None,
    max_side: int | None = None,
) -> np.ndarray:
    """Blend the anomaly map over the frame it came from; returns RGB uint8 at the frame's size,
    or, when `max_side` is given and the frame's longer side exceeds it, at the frame's size
    scaled down so that side is `max_side` (see `bounded_size`).

    `frame_rgb` may be a reduced-scale decode of the original frame: the overlay is drawn at
    whatever size `frame_rgb` has (`geometry` is in model-input pixels, so any frame size works).
    """
    fh, fw = frame_rgb.shape[:2]
    bw, bh = bounded_size(fw, fh, max_side)
    if (bw, bh) != (fw, fh):
        frame_rgb = cv2.resize(frame_rgb, (bw, bh), interpolation=cv2.INTER_AREA)
        fw, fh = bw, bh
    geo = Geometry(fw, fh, geometry.x0, geometry.y0, geometry.w, geometry.h)
    on_frame = map_to_frame(amap, geo, input_spec)
    colour = colorize(on_frame, spec)
    a = spec.alpha if alpha is None else alpha
    return cv2.addWeighted(frame_rgb, 1.0 - a, colour, a, 0.0)
