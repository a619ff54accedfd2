"""Resize a decoded frame to the model's input, and map model-space heatmaps back to the frame.

Shared by training and serving so that both see exactly the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspector.core.card import InputSpec


@dataclass(frozen=True)
class Geometry:
    """Where the frame's content lies in the model input, in model-input pixels.

    The content occupies [x0, x0 + w) x [y0, y0 + h) of the model input; for center crop the
    content rectangle extends beyond the input (negative x0/y0, w/h above the input size).
    """

    frame_width: int
    frame_height: int
    x0: float
    y0: float
    w: float
    h: float


def _gray3(rgb: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def interpolation(src_w: int, src_h: int, dst_w: int, dst_h: int) -> int:
    """INTER_AREA when shrinking (no aliasing), linear when enlarging."""
    return cv2.INTER_AREA if dst_w < src_w and dst_h < src_h else cv2.INTER_LINEAR


def prepare(rgb: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """Resize (stretch, letterbox or center crop) an RGB uint8 frame to the card's input size."""
    src_h, src_w = rgb.shape[:2]
    tw, th = spec.width, spec.height
    if spec.color == "gray":
        rgb = _gray3(rgb)
    if spec.resize == "stretch":
        out = cv2.resize(rgb, (tw, th), interpolation=interpolation(src_w, src_h, tw, th))
        return out, Geometry(src_w, src_h, 0.0, 0.0, float(tw), float(th))
    if spec.resize == "letterbox":
        scale = min(tw / src_w, th / src_h)
        nw, nh = max(1, round(src_w * scale)), max(1, round(src_h * scale))
        resized = cv2.resize(rgb, (nw, nh), interpolation=interpolation(src_w, src_h, nw, nh))
        out = np.full((th, tw, 3), spec.pad_value, dtype=np.uint8)
        x0, y0 = (tw - nw) // 2, (th - nh) // 2
        out[y0 : y0 + nh, x0 : x0 + nw] = resized
        return out, Geometry(src_w, src_h, float(x0), float(y0), float(nw), float(nh))
    # center_crop: scale so the shorter side fills, then cut the middle.
    scale = max(tw / src_w, th / src_h)
    nw, nh = max(tw, round(src_w * scale)), max(th, round(src_h * scale))
    resized = cv2.resize(rgb, (nw, nh), interpolation=interpolation(src_w, src_h, nw, nh))
    cx, cy = (nw - tw) // 2, (nh - th) // 2
    out = np.ascontiguousarray(resized[cy : cy + th, cx : cx + tw])
    return out, Geometry(src_w, src_h, float(-cx), float(-cy), float(nw), float(nh))


def map_to_frame(amap: np.ndarray, geometry: Geometry, spec: InputSpec) -> np.ndarray:
    """Bring an anomaly map [h, w] (any resolution over the model input) onto the frame.

    Returns float32 [frame_height, frame_width]. Frame areas the model never saw (cropped away)
    get the map's minimum.
    """
    mh, mw = amap.shape
    sx, sy = mw / spec.width, mh / spec.height
    # Content rectangle in map pixels.
    x0, y0 = geometry.x0 * sx, geometry.y0 * sy
    w, h = geometry.w * sx, geometry.h * sy
    fw, fh = geometry.frame_width, geometry.frame_height
    # Affine map from frame pixel centres to map coordinates.
    m = np.array([[w / fw, 0.0, x0 + 0.5 * w / fw - 0.5], [0.0, h / fh, y0 + 0.5 * h / fh - 0.5]])
    return cv2.warpAffine(
        amap.astype(np.float32),
        m,
        (fw, fh),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=float(amap.min()),
    )
