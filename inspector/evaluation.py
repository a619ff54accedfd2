"""Evaluate a model package on a data set's test split, exactly as the server runs it.

Images go through `inspector.core` (decode, resize, ONNX Runtime, verdict), so the figures are
those of the exported model, not of the PyTorch original.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from inspector.core.datasets import Sample
from inspector.core.errors import InspectorError
from inspector.core.metrics import auroc, rates_at
from inspector.core.pipeline import Detector, PreparedFrame
from inspector.core.preprocess import map_to_frame

log = logging.getLogger(__name__)

#: Pixel AUROC is computed with maps and masks brought to at most this many pixels a side.
PIXEL_EVAL_SIDE = 256


@dataclass
class ScoredSample:
    sample: Sample
    score: float


@dataclass
class EvalResult:
    scored: list[ScoredSample]
    skipped: list[tuple[str, str]]
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.sample.is_defect for s in self.scored], dtype=bool)

    @property
    def scores(self) -> np.ndarray:
        return np.array([s.score for s in self.scored], dtype=np.float64)


def _mask_at(path: Any, shape: tuple[int, int]) -> np.ndarray:
    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise InspectorError(f"{path}: mask is unreadable")
    return cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) >= 128


def _pixel_pair(
    detector: Detector, frame: PreparedFrame, amap: np.ndarray, sample: Sample
) -> tuple[np.ndarray, np.ndarray]:
    """Map on the decoded frame and its mask, both shrunk to at most PIXEL_EVAL_SIDE a side."""
    on_frame = map_to_frame(amap, frame.geometry, detector.card.input)
    h, w = on_frame.shape
    scale = min(1.0, PIXEL_EVAL_SIDE / max(h, w))
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    on_frame = cv2.resize(on_frame, (sw, sh), interpolation=cv2.INTER_AREA)
    mask = _mask_at(sample.mask, (sh, sw)) if sample.mask else np.zeros((sh, sw), bool)
    return on_frame.ravel(), mask.ravel()


def evaluate(
    detector: Detector,
    samples: Sequence[Sample],
    *,
    batch: int = 1,
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Score every sample; compute image and pixel metrics at the card's threshold."""
    scored: list[ScoredSample] = []
    skipped: list[tuple[str, str]] = []
    pix_scores: list[np.ndarray] = []
    pix_labels: list[np.ndarray] = []
    with_masks = any(s.mask for s in samples)
    elapsed = 0.0
    for start in range(0, len(samples), max(1, batch)):
        chunk = samples[start : start + max(1, batch)]
        t0 = time.perf_counter()
        frames, kept = [], []
        for s in chunk:
            try:
                frames.append(detector.prepare_bytes(s.path.read_bytes()))
                kept.append(s)
            except (InspectorError, OSError) as exc:
                skipped.append((str(s.path), str(exc)))
                log.warning("skipped %s: %s", s.path, exc)
        results = detector.infer(frames)
        elapsed += time.perf_counter() - t0
        for s, frame, res in zip(kept, frames, results, strict=True):
            scored.append(ScoredSample(s, res.score))
            if with_masks:
                ps, pl = _pixel_pair(detector, frame, res.anomaly_map, s)
                pix_scores.append(ps)
                pix_labels.append(pl)
        if progress:
            progress(len(chunk))
    result = EvalResult(scored, skipped)
    result.metrics = summarize(result, detector.threshold, elapsed)
    if pix_scores:
        result.metrics["pixel_auroc"] = auroc(
            np.concatenate(pix_labels), np.concatenate(pix_scores)
        )
    return result


def summarize(result: EvalResult, threshold: float, elapsed_s: float) -> dict[str, Any]:
    """The keys of `inspector evaluate --json` (ARCHITECTURE.md)."""
    y, s = result.labels, result.scores
    rates = rates_at(y, s, threshold)
    n = len(result.scored)
    per_type: dict[str, float | None] = {}
    goods = s[~y]
    for t in sorted({x.sample.label for x in result.scored if x.sample.is_defect}):
        mask = np.array([x.sample.label == t for x in result.scored])
        per_type[t] = auroc(
            np.concatenate([np.zeros(goods.size), np.ones(mask.sum())]),
            np.concatenate([goods, s[mask]]),
        )
    return {
        "image_auroc": auroc(y, s),
        "pixel_auroc": None,
        "f1": rates.f1,
        "precision": rates.precision,
        "recall": rates.recall,
        "threshold": threshold,
        "false_reject_rate": rates.false_reject_rate,
        "escape_rate": rates.escape_rate,
        "n_good": int((~y).sum()),
        "n_defect": int(y.sum()),
        "n_skipped": len(result.skipped),
        "ms_per_image": 1000 * elapsed_s / n if n else None,
        "auroc_per_defect_type": per_type,
    }
