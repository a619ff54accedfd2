"""Tiled inference: the tile grid, stitching, the card's tiling section and a tiled Detector
(real ONNX Runtime sessions of the brightness model from tests/model_factory.py)."""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core import tiles
from inspector.core.card import InputSpec, TilingSpec, read_card
from inspector.core.errors import ImageTooLargeError, ModelPackageError
from inspector.core.pipeline import Detector
from inspector.core.runtime import RuntimeOptions
from tests.conftest import encode_bgr
from tests.model_factory import make_package

SPEC = TilingSpec(tile_width=256, tile_height=192, overlap=0.25)


def covered(grid: tiles.TileGrid) -> np.ndarray:
    """How many tiles cover each pixel of the frame."""
    count = np.zeros((grid.frame_height, grid.frame_width), dtype=np.int32)
    for x, y, w, h in grid.boxes():
        count[y : y + h, x : x + w] += 1
    return count


@pytest.mark.parametrize("size", [(3000, 2000), (1000, 700), (257, 193), (256, 192)])
def test_grid_covers_the_frame_with_the_asked_overlap_and_no_tile_outside(
    size: tuple[int, int],
) -> None:
    w, h = size
    grid = tiles.plan(w, h, SPEC)
    assert (grid.tile_width, grid.tile_height) == (256, 192)
    assert covered(grid).min() >= 1
    for starts, tile, length in ((grid.xs, 256, w), (grid.ys, 192, h)):
        assert starts[0] == 0 and starts[-1] + tile == length  # edge tiles flush, inward
        steps = np.diff(starts)
        assert np.all(steps <= tile * (1 - SPEC.overlap) + 1)  # at least the overlap
        assert np.all(steps > 0)


def test_grid_uses_the_fewest_tiles_for_the_overlap() -> None:
    # stride 192 over 3000 - 256 = 2744 px -> 15 steps, 16 tiles; 1808 / 144 -> 13, 14 tiles
    grid = tiles.plan(3000, 2000, SPEC)
    assert (len(grid.xs), len(grid.ys)) == (16, 14)
    no_overlap = tiles.plan(1024, 768, TilingSpec(tile_width=256, tile_height=192, overlap=0))
    assert no_overlap.xs == (0, 256, 512, 768) and no_overlap.count == 16
    assert covered(no_overlap).max() == 1


def test_frame_smaller_than_a_tile_is_one_clipped_tile() -> None:
    grid = tiles.plan(100, 60, SPEC)
    assert grid.count == 1 and (grid.tile_width, grid.tile_height) == (100, 60)
    thin = tiles.plan(5000, 1, SPEC)  # a line-scan row: one tile high, clipped to 1 px
    assert thin.tile_height == 1 and len(thin.ys) == 1 and covered(thin).min() >= 1


def test_grid_in_reduced_decode_pixels_keeps_the_source_tile() -> None:
    grid = tiles.plan(750, 500, SPEC, reduction=4)
    assert (grid.tile_width, grid.tile_height) == (64, 48)
    assert grid.xs[-1] + 64 == 750 and covered(grid).min() >= 1


def test_too_many_tiles_are_refused_before_decoding() -> None:
    tiny = TilingSpec(tile_width=16, tile_height=16, overlap=0.5)
    with pytest.raises(ImageTooLargeError, match="tiles of 16x16 px, over the limit"):
        tiles.plan(4000, 3000, tiny)


def test_cut_resizes_each_tile_from_its_own_place() -> None:
    frame = np.zeros((400, 600, 3), dtype=np.uint8)
    frame[:, 300:] = 200  # right half bright
    spec = TilingSpec(tile_width=200, tile_height=200, overlap=0)
    grid = tiles.plan(600, 400, spec)
    cut = tiles.cut(frame, grid, InputSpec(width=50, height=50))
    assert cut.shape == (6, 50, 50, 3) and cut.dtype == np.uint8
    means = cut.reshape(2, 3, -1).mean(axis=2)
    np.testing.assert_allclose(means[:, 0], 0)
    np.testing.assert_allclose(means[:, 1], 100, atol=3)  # half dark, half bright
    np.testing.assert_allclose(means[:, 2], 200)


def test_stitching_puts_each_tile_map_in_its_place_with_max_in_overlaps() -> None:
    grid = tiles.plan(400, 200, TilingSpec(tile_width=200, tile_height=200, overlap=0.5))
    assert grid.xs == (0, 100, 200)
    stitcher = tiles.Stitcher(grid)
    for i in range(grid.count):
        tile_map = np.full((50, 50), float(i), dtype=np.float32)
        stitcher.add(i, tile_map, score=float(i) / 10)
    out = stitcher.result()
    assert out.shape == (50, 100)  # the tiles' map scale: 50 map px per 200 frame px
    assert stitcher.score == pytest.approx(0.2)
    np.testing.assert_array_equal(out[:, :25], 0)  # only tile 0
    np.testing.assert_array_equal(out[:, 25:75], np.maximum.accumulate(out[:, 25:75], axis=1))
    np.testing.assert_array_equal(out[:, 50:], 2)  # tile 2 wins where it overlaps tile 1


def test_stitched_map_of_a_huge_frame_stays_small() -> None:
    grid = tiles.plan(20000, 1000, TilingSpec(tile_width=500, tile_height=500))
    w, h, scale = tiles.stitched_size(grid, 224, 224)
    assert (w, h) == (tiles.MAP_MAX_SIDE, round(1000 * tiles.MAP_MAX_SIDE / 20000))
    assert scale < 224 / 500


def test_a_spot_lands_at_its_place_in_the_stitched_map() -> None:
    grid = tiles.plan(1000, 600, TilingSpec(tile_width=300, tile_height=300, overlap=0.3))
    stitcher = tiles.Stitcher(grid)
    spot = (730, 410)  # frame pixel
    for i, (x, y, w, h) in enumerate(grid.boxes()):
        tile_map = np.zeros((30, 30), dtype=np.float32)
        if x <= spot[0] < x + w and y <= spot[1] < y + h:
            tile_map[(spot[1] - y) * 30 // h, (spot[0] - x) * 30 // w] = 1.0
        stitcher.add(i, tile_map, 0.0)
    out = stitcher.result()
    py, px = np.unravel_index(np.argmax(out), out.shape)
    assert abs(px / out.shape[1] * 1000 - spot[0]) <= 15
    assert abs(py / out.shape[0] * 600 - spot[1]) <= 15


# --- the card ---------------------------------------------------------------------------


def test_untiled_cards_are_written_without_the_section(tmp_path: Path) -> None:
    pkg = make_package(tmp_path)
    assert "tiling" not in json.loads((pkg / "card.json").read_text())
    assert read_card(pkg / "card.json").tiling is None


@pytest.mark.parametrize("overrides, why", [
    ({"kind": "classifier", "labels": ["good", "bad"]}, "only anomaly models are tiled"),
    ({"input": {"width": 64, "height": 48, "resize": "letterbox"}}, "must be stretch"),
])
def test_tiling_needs_an_anomaly_model_that_stretches(
    tmp_path: Path, overrides: dict[str, object], why: str
) -> None:
    pkg = make_package(tmp_path, card_overrides={"tiling": SPEC})
    raw = json.loads((pkg / "card.json").read_text())
    raw.update(overrides)
    (pkg / "card.json").write_text(json.dumps(raw))
    with pytest.raises(ModelPackageError, match=why):
        read_card(pkg / "card.json")


# --- a tiled detector -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> Detector:
    pkg = make_package(tmp_path_factory.mktemp("tiled"), card_overrides={"tiling": SPEC})
    return Detector.load(pkg, RuntimeOptions(providers="cpu", max_batch=8))


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Detector:
    return Detector.load(make_package(tmp_path_factory.mktemp("whole")),
                         RuntimeOptions(providers="cpu"))


def spot_frame(w: int = 3000, h: int = 2000, at: tuple[int, int] = (2200, 700)) -> np.ndarray:
    frame = np.full((h, w, 3), 30, dtype=np.uint8)
    cv2.circle(frame, at, 15, (250, 250, 250), -1)
    return frame


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_a_30px_spot_in_a_6mp_frame_fails_tiled_and_passes_whole(
    tiled: Detector, whole: Detector, ext: str
) -> None:
    data = encode_bgr(spot_frame(), ext)
    frame = tiled.prepare_bytes(data)
    assert frame.grid is not None and frame.model_input.shape == (frame.grid.count, 48, 64, 3)
    assert frame.frame.reduction == (4 if ext == ".jpg" else 1)  # tiles of 256 -> 64 px
    (judgement,) = tiled.infer([frame])
    assert judgement.verdict == "fail" and judgement.score > 0.9
    amap = judgement.anomaly_map
    py, px = np.unravel_index(np.argmax(amap), amap.shape)
    assert abs(px / amap.shape[1] * 3000 - 2200) < 60 and abs(py / amap.shape[0] * 2000 - 700) < 60
    overlay = tiled.overlay(frame, judgement, max_side=1024)  # the whole (decoded) frame
    assert overlay.shape == {".png": (683, 1024, 3), ".jpg": (500, 750, 3)}[ext]
    (flat,) = whole.judge_bytes([data])
    assert flat.verdict == "pass"  # one 64x48 resize averages the spot away


def test_tiled_batches_of_several_frames_keep_each_frames_result(tiled: Detector) -> None:
    frames = [tiled.prepare_array(spot_frame(1200, 800, at)) for at in ((100, 100), (1100, 700))]
    frames.insert(1, tiled.prepare_array(np.full((500, 900, 3), 30, np.uint8)))
    results = tiled.infer(frames)  # 3 frames, 8 + 6 + 8 tiles, in chunks of max_batch 8
    assert [r.verdict for r in results] == ["fail", "pass", "fail"]
    for r, (x, y), (w, h) in zip(results[::2], ((100, 100), (1100, 700)), ((1200, 800),) * 2,
                                 strict=True):
        py, px = np.unravel_index(np.argmax(r.anomaly_map), r.anomaly_map.shape)
        assert abs(px / r.anomaly_map.shape[1] * w - x) < 40
        assert abs(py / r.anomaly_map.shape[0] * h - y) < 40


def test_tiled_memory_estimate_counts_the_tiles(tiled: Detector, whole: Detector) -> None:
    data = encode_bgr(spot_frame(), ".png")
    header = tiled.probe(data)
    extra = tiled.memory_estimate(header, len(data)) - whole.memory_estimate(header, len(data))
    grid = tiled.tile_grid(header)
    assert grid.count == 16 * 14
    assert extra >= grid.count * 64 * 48 * 3  # at least the tiles themselves


def test_small_and_extreme_frames_are_judged_or_refused_clearly(tiled: Detector) -> None:
    (small,) = tiled.infer([tiled.prepare_array(np.full((40, 50, 3), 30, np.uint8))])
    assert small.verdict == "pass" and small.anomaly_map.size > 0
    line = encode_bgr(np.full((1, 60000, 3), 30, np.uint8), ".png")
    (row,) = tiled.judge_bytes([line])
    assert row.verdict == "pass"
    with pytest.raises(ImageTooLargeError, match="over the limit of 65500"):
        tiled.probe(encode_bgr(np.full((1, 70000, 3), 30, np.uint8), ".png"))


def test_a_frames_chunks_run_at_once_with_the_same_judgement(tmp_path: Path) -> None:
    pkg = make_package(tmp_path, card_overrides={"tiling": SPEC})
    opts = RuntimeOptions(providers="cpu", max_batch=4, intra_op_threads=1)
    serial = Detector.load(pkg, replace(opts, chunk_lanes=1))
    parallel = Detector.load(pkg, replace(opts, chunk_lanes=3))
    assert (serial.model.chunk_lanes, parallel.model.chunk_lanes) == (1, 3)
    frames = [parallel.prepare_array(spot_frame(600, 400, at)) for at in ((100, 100), (450, 300))]
    assert sum(len(f.model_input) for f in frames) == 18  # 5 chunks: 4 of 4 tiles, one of 2
    for a, b in zip(serial.infer(frames), parallel.infer(frames), strict=True):
        assert a.score == b.score and a.verdict == b.verdict == "fail"
        np.testing.assert_array_equal(a.anomaly_map, b.anomaly_map)
    # The default: every core this process may use, with one thread per call; one lane when
    # each call already spreads over every core (intra_op_threads 0).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert Detector.load(pkg, opts).model.chunk_lanes == cores
    assert Detector.load(pkg, RuntimeOptions(providers="cpu")).model.chunk_lanes == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread affinity is Linux-only")
def test_chunk_threads_use_every_core_when_a_pinned_thread_starts_them(tmp_path: Path) -> None:
    """A server inference thread is pinned to one core (`CorePinner`): the threads it starts
    to run a frame's chunks would inherit that one core, so they widen their mask again."""
    detector = Detector.load(make_package(tmp_path, card_overrides={"tiling": SPEC}),
                             RuntimeOptions(providers="cpu", max_batch=2, intra_op_threads=1,
                                            chunk_lanes=2))
    model, seen = detector.model, []
    plain_run = model.run

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        seen.append(os.sched_getaffinity(0))
        return plain_run(batch)

    model.run = run  # type: ignore[method-assign]
    all_cores = os.sched_getaffinity(0)
    frame = detector.prepare_array(spot_frame(600, 400, (100, 100)))  # 9 tiles: 5 chunks

    def pinned() -> None:
        os.sched_setaffinity(0, {min(all_cores)})
        detector.infer([frame])

    thread = threading.Thread(target=pinned)
    thread.start()
    thread.join()
    assert len(seen) == 5 and all(s == all_cores for s in seen)
