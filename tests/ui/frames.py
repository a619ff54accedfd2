"""Synthetic camera frames for the review-page tests: a machined flange on a dark fixture.

The tiny test model scores brightness (max of 4x4-pooled gray / 255 at 64x48), so a part's
`brightness` sets its score (~0.3 at 80) and a defect is a bright blob big enough to survive
the pooling. Pictures look like parts so the screenshots in docs/ make sense to people.
"""

from __future__ import annotations

import cv2
import numpy as np


def part_frame(
    *, brightness: float = 80.0, defect: bool = False, seed: int = 0, width: int = 480,
    height: int = 360,
) -> bytes:
    """A JPEG of one part; `defect` adds a bright scuff at a seed-dependent place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    img = 22 + 10 * (yy / height)  # dark fixture, slightly lit from below
    cx, cy = width / 2 + rng.uniform(-8, 8), height / 2 + rng.uniform(-6, 6)
    r = np.hypot(xx - cx, yy - cy)
    outer, inner = min(width, height) * 0.42, min(width, height) * 0.14
    disc = (r <= outer) & (r >= inner)
    angle = np.arctan2(yy - cy, xx - cx)
    brushed = 6 * np.sin(r * 0.9 + rng.uniform(0, 6)) + 5 * np.cos(angle * 3)  # turning marks
    img = np.where(disc, brightness + brushed - 18 * (r / outer) ** 2, img)
    for k in range(6):  # bolt holes
        a = k * np.pi / 3 + 0.3
        hx, hy = cx + 0.7 * outer * np.cos(a), cy + 0.7 * outer * np.sin(a)
        img = np.where(np.hypot(xx - hx, yy - hy) < outer * 0.09, 18, img)
    img = img + rng.normal(0, 2.5, img.shape)
    if defect:
        a = rng.uniform(0, 2 * np.pi)
        dx, dy = cx + 0.45 * outer * np.cos(a), cy + 0.45 * outer * np.sin(a)
        blob = ((xx - dx) / 34) ** 2 + ((yy - dy) / 24) ** 2
        img = np.where(blob < 1, 235 - 30 * blob, img)
    gray = np.clip(img, 0, 255).astype(np.uint8)
    bgr = cv2.merge([gray, gray, (gray * 0.97).astype(np.uint8)])
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 88])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return bytes(buf.tobytes())
