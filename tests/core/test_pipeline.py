"""Resize modes, heatmap geometry, verdicts, mixed frame sizes in one batch, providers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core import runtime
from inspector.core.card import InputSpec
from inspector.core.pipeline import Detector, verdict_for
from inspector.core.preprocess import map_to_frame, prepare
from tests.conftest import encode_bgr
from tests.model_factory import make_package, part_image


def test_verdict_is_fail_at_threshold() -> None:
    assert verdict_for(0.5, 0.5) == "fail"
    assert verdict_for(0.4999, 0.5) == "pass"


@pytest.mark.parametrize("mode", ["stretch", "letterbox", "center_crop"])
def test_prepare_gives_model_size(mode: str) -> None:
    spec = InputSpec(width=64, height=48, resize=mode)  # type: ignore[arg-type]
    for shape in [(96, 128, 3), (300, 40, 3), (10, 500, 3)]:
        out, geo = prepare(np.zeros(shape, np.uint8), spec)
        assert out.shape == (48, 64, 3) and out.dtype == np.uint8
        assert (geo.frame_width, geo.frame_height) == (shape[1], shape[0])


def test_letterbox_keeps_aspect_and_pads() -> None:
    spec = InputSpec(width=64, height=64, resize="letterbox", pad_value=7)
    frame = np.full((32, 128, 3), 200, np.uint8)  # 4:1
    out, geo = prepare(frame, spec)
    assert (geo.w, geo.h) == (64, 16) and geo.y0 == 24
    assert out[0, 0, 0] == 7 and out[32, 32, 0] == 200


def test_gray_color_mode_equalises_channels() -> None:
    spec = InputSpec(width=16, height=16, color="gray")
    frame = np.zeros((16, 16, 3), np.uint8)
    frame[..., 0] = 255
    out, _ = prepare(frame, spec)
    assert np.array_equal(out[..., 0], out[..., 2]) and out[0, 0, 0] > 0


@pytest.mark.parametrize("mode", ["stretch", "letterbox", "center_crop"])
def test_heatmap_hotspot_lands_on_the_defect(mode: str) -> None:
    """A hot spot in the model-space map must come back where the defect is in the frame."""
    spec = InputSpec(width=64, height=64, resize=mode)  # type: ignore[arg-type]
    frame = np.zeros((90, 160, 3), np.uint8)
    cv2.circle(frame, (110, 40), 6, (255, 255, 255), -1)
    model_in, geo = prepare(frame, spec)
    amap = cv2.resize(model_in[..., 0].astype(np.float32), (16, 16), interpolation=cv2.INTER_AREA)
    back = map_to_frame(amap, geo, spec)
    assert back.shape == (90, 160)
    y, x = np.unravel_index(int(np.argmax(back)), back.shape)
    assert abs(x - 110) <= 8 and abs(y - 40) <= 8


def test_detector_judges_good_and_defect(
    tiny_package: Path, good_jpeg: bytes, defect_png: bytes
) -> None:
    det = Detector.load(tiny_package)
    good, bad = det.judge_bytes([good_jpeg, defect_png])
    assert good.verdict == "pass" and good.score < 0.5
    assert bad.verdict == "fail" and bad.score >= 0.5
    assert good.anomaly_map.shape == (12, 16)


def test_mixed_frame_sizes_in_one_batch(tiny_package: Path) -> None:
    det = Detector.load(tiny_package)
    blobs = [
        encode_bgr(part_image(640, 480, defect=True), ".jpg"),
        encode_bgr(part_image(50, 200, seed=2), ".png"),
        encode_bgr(part_image(64, 48, defect=True, seed=3, channels=1), ".bmp"),
    ]
    frames = [det.prepare_bytes(b) for b in blobs]
    assert frames[0].frame.reduction == 8  # 640x480 vs 64x48 input: decoded at 80x60
    results = det.infer(frames)
    assert [r.verdict for r in results] == ["fail", "pass", "fail"]
    one_by_one = [det.infer([f])[0].score for f in frames]
    np.testing.assert_allclose([r.score for r in results], one_by_one, rtol=1e-6)


def test_batches_larger_than_max_batch_are_split(models_root: Path) -> None:
    pkg = make_package(models_root)
    det = Detector.load(pkg, runtime.RuntimeOptions(providers="cpu", max_batch=3))
    frames = [det.prepare_array(part_image(defect=i % 2 == 1, seed=i)) for i in range(8)]
    results = det.infer(frames)
    assert [r.verdict for r in results] == ["pass", "fail"] * 4


def test_overlay_has_frame_geometry_and_colour(tiny_package: Path) -> None:
    det = Detector.load(tiny_package)
    frame = det.prepare_bytes(encode_bgr(part_image(200, 100, defect=True), ".png"))
    result = det.infer([frame])[0]
    over = det.overlay(frame, result)
    assert over.shape == (100, 200, 3)
    # The defect (bright blob at x=133, y=33) is painted hot: more red than blue there.
    hot = over[33, 133].astype(int)
    cold = over[90, 10].astype(int)
    assert hot[0] > hot[2] and cold[2] > cold[0]


def test_classifier_reports_a_label(classifier_package: Path, defect_png: bytes) -> None:
    det = Detector.load(classifier_package)
    (res,) = det.judge_bytes([defect_png])
    assert res.label == "defect" and res.probabilities is not None


def test_auto_provider_is_cpu_without_a_gpu() -> None:
    if runtime.cuda_device_count() > 0:
        pytest.skip("this machine has a CUDA device")
    assert runtime.plan_for(runtime.RuntimeOptions()).providers == ["CPUExecutionProvider"]
    # Asking for CUDA without a device falls back quietly instead of erroring in ORT.
    cuda = runtime.plan_for(runtime.RuntimeOptions(providers="cuda"))
    assert cuda.providers == ["CPUExecutionProvider"]


@pytest.mark.gpu
def test_cuda_provider_is_used_when_present(tiny_package: Path) -> None:
    if runtime.cuda_device_count() == 0:
        pytest.skip("no CUDA device on this machine")
    det = Detector.load(tiny_package, runtime.RuntimeOptions(providers="cuda"))
    assert det.model.provider == "CUDAExecutionProvider"
