"""The server draws heatmap overlays at most heatmap.SERVER_MAX_SIDE on their longer side; the
CLI (no max_side) keeps the decoded frame's size."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.core import heatmap, images
from inspector.core.pipeline import Detector
from tests.conftest import encode_bgr
from tests.model_factory import part_image


def test_bounded_size_keeps_the_aspect_ratio() -> None:
    assert heatmap.bounded_size(16384, 3000, 2048) == (2048, 375)
    assert heatmap.bounded_size(3000, 16384, 2048) == (375, 2048)
    assert heatmap.bounded_size(7071, 7071, 2048) == (2048, 2048)
    assert heatmap.bounded_size(65_500, 16, 2048) == (2048, 1)  # never 0 px
    assert heatmap.bounded_size(2048, 1000, 2048) == (2048, 1000)  # fits: unchanged
    assert heatmap.bounded_size(5000, 4000, None) == (5000, 4000)


def test_large_frame_overlay_is_bounded_and_still_hot_at_the_defect(tiny_package: Path) -> None:
    det = Detector.load(tiny_package)
    frame = det.prepare_bytes(encode_bgr(part_image(4000, 1000, defect=True), ".png"))
    result = det.infer([frame])[0]
    assert frame.frame.rgb.shape[:2] == (1000, 4000)  # PNGs are decoded at full size

    full = det.overlay(frame, result)  # the CLI's overlay: the frame's size
    small = det.overlay(frame, result, max_side=heatmap.SERVER_MAX_SIDE)
    assert full.shape == (1000, 4000, 3)
    assert small.shape == (512, 2048, 3) and small.dtype == np.uint8
    # Same picture, scaled: the defect (blob at 2/3 width, 1/3 height) is hot, the corner cold.
    hot, cold = small[512 // 3, (2 * 2048) // 3].astype(int), small[500, 10].astype(int)
    assert hot[0] > hot[2] and cold[2] > cold[0]
    shrunk = cv2.resize(full, (2048, 512), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(shrunk - small.astype(int)).mean() < 4


def test_small_frame_overlay_is_unchanged_by_the_bound(tiny_package: Path) -> None:
    det = Detector.load(tiny_package)
    frame = det.prepare_bytes(encode_bgr(part_image(200, 100, defect=True), ".png"))
    result = det.infer([frame])[0]
    bounded = det.overlay(frame, result, max_side=heatmap.SERVER_MAX_SIDE)
    assert np.array_equal(bounded, det.overlay(frame, result))


def test_memory_estimate_counts_only_the_bounded_overlay() -> None:
    header = images.ImageHeader("PNG", 16384, 3000)
    est = images.memory_estimate(header, 1000, (64, 48))
    assert est == (
        1000
        + 16384 * 3000 * images.BYTES_PER_PIXEL_IN_FLIGHT
        + 2048 * 375 * images.BYTES_PER_OVERLAY_PIXEL
    )
    # A frame at the default max_pixels (50 Mpx) with a full 32 MiB body fits the 1 GiB default.
    assert images.worst_frame_bytes(50_000_000, 16_384, 32 * 2**20) < 1024**3
