"""The demo's heatmaps show where the defect is: the demo's own data set and model (trained as
`inspector demo` trains it), its posted frames, and the overlay the server stores, read back
through the colour map and compared with the painted defect's mask."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from inspector.core.pipeline import Detector
from inspector.demo import DemoConfig, demo_frames, make_dataset, train_model

pytestmark = [pytest.mark.train, pytest.mark.slow]

#: COLORMAP_JET as RGB, index = position on the colour scale (0 blue .. 255 red).
_JET = cv2.cvtColor(
    cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(-1, 1), cv2.COLORMAP_JET),
    cv2.COLOR_BGR2RGB,
).reshape(256, 3).astype(np.int32)
#: "Red": the top fifth of the colour scale (orange to dark red), where a reviewer looks.
RED = int(0.8 * 255)


def scale_position(colour: np.ndarray) -> np.ndarray:
    """Each pixel of an opaque overlay (alpha 1) mapped back to its place on the colour scale."""
    dist = ((colour.astype(np.int32)[:, :, None, :] - _JET[None, None]) ** 2).sum(-1)
    return np.argmin(dist, axis=-1)


@pytest.fixture(scope="module")
def demo(demo_folder: Path) -> tuple[DemoConfig, Detector]:
    cfg = DemoConfig(data_dir=demo_folder)
    make_dataset(cfg)  # made by the fixture already: these return the existing ones
    return cfg, Detector.load(train_model(cfg))


def test_failed_demo_frames_show_red_on_the_defect_and_only_near_it(
    demo: tuple[DemoConfig, Detector],
) -> None:
    cfg, detector = demo
    checked, on_defect, red_areas = 0, 0, []
    for path in demo_frames(cfg):
        frame = detector.prepare_bytes(path.read_bytes())
        judgement = detector.infer([frame])[0]
        position = scale_position(detector.overlay(frame, judgement, alpha=1.0))
        red = position >= RED
        if path.parent.name == "good":
            assert judgement.verdict == "pass", path
            assert not red.any(), f"a good frame lights up red: {path}"
            continue
        if judgement.verdict != "fail":
            continue
        mask_path = cfg.dataset / "ground_truth" / path.parent.name / f"{path.stem}_mask.png"
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127
        checked += 1
        red_areas.append(float(red.mean()))
        # The red region holds a good part of the painted defect ...
        on_defect += bool(red[mask].mean() >= 1 / 3)
        # ... and the colours span the scale, from the cool half to red: not one uniform wash.
        assert position.min() < 128 and position.max() >= RED, path
    assert checked >= 10, "the demo posts at least ten defective frames that fail"
    assert on_defect >= 0.75 * checked, f"red on the defect in {on_defect} of {checked} frames"
    # Red marks a region, not the frame: at most a quarter of any failed frame.
    assert max(red_areas) <= 0.25, red_areas
