"""Anomaly heatmaps as a colour overlay on the original frame."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.core.card import HeatmapSpec, InputSpec
from inspector.core.preprocess import Geometry, map_to_frame


def colorize(amap: np.ndarray, spec: HeatmapSpec) -> np.ndarray:
    """Map anomaly values to RGB with the card's scale: vmin -> blue, vmax -> red."""
    norm = (amap.astype(np.float32) - spec.vmin) / (spec.vmax - spec.vmin)
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
) -> np.ndarray:
    """Blend the anomaly map over the frame it came from; returns RGB uint8 at the frame's size.

    `frame_rgb` may be a reduced-scale decode of the original frame: the overlay is drawn at
    whatever size `frame_rgb` has.
    """
    fh, fw = frame_rgb.shape[:2]
    geo = Geometry(fw, fh, geometry.x0, geometry.y0, geometry.w, geometry.h)
    on_frame = map_to_frame(amap, geo, input_spec)
    colour = colorize(on_frame, spec)
    a = spec.alpha if alpha is None else alpha
    return cv2.addWeighted(frame_rgb, 1.0 - a, colour, a, 0.0)
