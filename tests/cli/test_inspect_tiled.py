"""`inspector inspect` with a tiled package: the same table, JSON and heatmaps as any model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from inspector.core.card import TilingSpec
from tests.cli.test_inspect import run_cli
from tests.conftest import encode_bgr
from tests.model_factory import make_package


def test_inspect_judges_big_frames_tiled_with_whole_frame_heatmaps(tmp_path: Path) -> None:
    tiling = TilingSpec(tile_width=256, tile_height=192, overlap=0.25)
    pkg = make_package(tmp_path / "models", card_overrides={"tiling": tiling})
    frames = tmp_path / "frames"
    frames.mkdir()
    spot = np.full((2000, 3000, 3), 30, dtype=np.uint8)
    cv2.circle(spot, (2200, 700), 15, (250, 250, 250), -1)
    (frames / "spot.jpg").write_bytes(encode_bgr(spot, ".jpg"))
    (frames / "plain.png").write_bytes(encode_bgr(np.full((2000, 3000, 3), 30, np.uint8), ".png"))
    heat = tmp_path / "heat"
    proc = run_cli("inspect", pkg, frames, "--json", "--heatmaps", heat)
    assert proc.returncode == 0, proc.stderr
    rows = {Path(r["file"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    assert rows["spot.jpg"]["verdict"] == "fail" and rows["plain.png"]["verdict"] == "pass"
    overlay = cv2.imread(rows["spot.jpg"]["heatmap"])
    assert overlay.shape[:2] == (500, 750)  # the whole frame, as decoded (JPEG at 1/4)
    red = overlay[:, :, 2].astype(int) - overlay[:, :, 0].astype(int)
    py, px = np.unravel_index(np.argmax(red), red.shape)
    assert abs(px * 4 - 2200) < 60 and abs(py * 4 - 700) < 60


def test_models_validate_names_the_tiles(tmp_path: Path) -> None:
    tiling = TilingSpec(tile_width=256, tile_height=192)
    proc = run_cli("models", "validate",
                   make_package(tmp_path / "models", card_overrides={"tiling": tiling}))
    assert proc.returncode == 0, proc.stderr
    assert "input 64x48 stretch, tiles of 256x192 px, threshold" in proc.stdout
