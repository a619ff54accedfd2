"""A 40-px defect in a 12 MP frame: caught by a tiled model, missed by a whole-frame model.

The surface is a fine grain (Gaussian-blurred noise, like cast or sand-blasted metal); the
defect is a 40 x 40 px patch of the same mean brightness where the grain turns into fine
stripes (a 12-px period), say a tool mark. One 224-px resize of the whole 4000 x 3000 frame
averages grain and stripes alike to grey; tiles of 448 px resized to 224 keep both. Both models
are trained the same way on the same three training frames, with a small memory bank and
tiles without overlap to stay quick.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from inspector.core.pipeline import Detector
from inspector.core.runtime import RuntimeOptions
from training.cli import train_command
from training.errors import TrainingError
from training.train import TrainResult

# Each model trains in about a minute on an idle 2-core machine; a shared one takes several.
pytestmark = [pytest.mark.train, pytest.mark.slow, pytest.mark.timeout(1200)]

WIDTH, HEIGHT, DEFECT = 4000, 3000, 40
DEFECT_AT = (2900, 1300)  # top-left corner of the defect, frame pixels


def surface(seed: int, defect: bool = False) -> np.ndarray:
    """A gray 12 MP grain; with `defect`, a 40-px patch of stripes of the same mean."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((HEIGHT, WIDTH), dtype=np.float32)
    grain = cv2.GaussianBlur(noise, (0, 0), 2.0)
    img = 128 + grain * (30 / float(grain.std()))
    if defect:
        x, y = DEFECT_AT
        rows = 128 + 45 * np.sin(2 * np.pi * np.arange(DEFECT, dtype=np.float32) / 12)
        img[y : y + DEFECT, x : x + DEFECT] = rows[:, None]
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def line_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MVTec layout: three 12 MP training goods, one test good, one test defect (PNG)."""
    root = tmp_path_factory.mktemp("line")
    files = {"train/good/000.png": surface(1), "train/good/001.png": surface(2),
             "train/good/002.png": surface(3), "test/good/000.png": surface(4),
             "test/mark/000.png": surface(5, defect=True)}
    for name, img in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return root


QUICK = {"seed": 0, "coreset_max": 1000}


@pytest.fixture(scope="module")
def tiled_run(line_set: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("tiled") / "models" / "line" / "1"
    return train_command(data=line_set, out=out, tile=448, tile_overlap=0, **QUICK)


@pytest.fixture(scope="module")
def whole_run(line_set: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("whole") / "models" / "line" / "1"
    return train_command(data=line_set, out=out, **QUICK)


def judge(result: TrainResult, path: Path) -> tuple[str, float, np.ndarray]:
    detector = Detector.load(result.out, RuntimeOptions(providers="cpu"))
    (j,) = detector.judge_bytes([path.read_bytes()])
    return j.verdict, j.score, j.anomaly_map


def test_tiled_model_catches_the_40px_defect_the_whole_frame_model_misses(
    line_set: Path, tiled_run: TrainResult, whole_run: TrainResult
) -> None:
    defect = line_set / "test" / "mark" / "000.png"
    verdict, score, amap = judge(tiled_run, defect)
    assert verdict == "fail", (score, tiled_run.card.threshold.value)
    py, px = np.unravel_index(np.argmax(amap), amap.shape)
    centre = (DEFECT_AT[0] + DEFECT / 2, DEFECT_AT[1] + DEFECT / 2)
    assert abs(px / amap.shape[1] * WIDTH - centre[0]) < 150
    assert abs(py / amap.shape[0] * HEIGHT - centre[1]) < 150
    assert judge(tiled_run, line_set / "test" / "good" / "000.png")[0] == "pass"
    whole_verdict, whole_score, _ = judge(whole_run, defect)
    assert whole_verdict == "pass", (whole_score, whole_run.card.threshold.value)


def test_tiled_card_and_evaluation(tiled_run: TrainResult) -> None:
    card = json.loads((tiled_run.out / "card.json").read_text())
    assert card["tiling"] == {"tile_width": 448, "tile_height": 448, "overlap": 0.0,
                              "frame_width": WIDTH, "frame_height": HEIGHT}
    assert card["input"]["width"] == card["input"]["height"] == 224
    assert card["training"]["params"]["tile"] == 448
    # 3 frames x 9 x 7 tiles of 448 px (4000 / 448 = 8.9, 3000 / 448 = 6.7)
    assert card["metrics"]["n_train_tiles"] == 3 * 9 * 7
    assert card["metrics"]["n_train_images"] == 3
    # the evaluation ran tiled through inspector.core: the defect frame scored above the good
    assert tiled_run.evaluation is not None and tiled_run.evaluation["image_auroc"] == 1.0


def test_tile_knob_is_refused_for_a_classifier_and_a_letterbox(line_set: Path,
                                                               tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="only anomaly models are tiled"):
        train_command(data=line_set, out=tmp_path / "m" / "c" / "1", tile=448, kind="classifier")
    with pytest.raises(TrainingError, match="tiles are stretched"):
        train_command(data=line_set, out=tmp_path / "m" / "l" / "1", tile=448, resize="letterbox")
