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
from inspector.core.operating import aupro, label_regions, operating_points
from inspector.core.pipeline import Detector, PreparedFrame
from inspector.core.preprocess import map_to_frame

log = logging.getLogger(__name__)

#: Pixel AUROC and AUPRO are computed with maps and masks brought to at most this many pixels
#: a side.
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
    detector: Detector, frame: PreparedFrame, amap: np.ndarray, sample: Sample, first_id: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Map on the decoded frame and its mask's defect regions (ids from `first_id`, 0 =
    defect-free), both shrunk to at most PIXEL_EVAL_SIDE a side; and the number of regions."""
    on_frame = map_to_frame(amap, frame.geometry, detector.card.input)
    h, w = on_frame.shape
    scale = min(1.0, PIXEL_EVAL_SIDE / max(h, w))
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    on_frame = cv2.resize(on_frame, (sw, sh), interpolation=cv2.INTER_AREA)
    mask = _mask_at(sample.mask, (sh, sw)) if sample.mask else np.zeros((sh, sw), bool)
    regions, n = label_regions(mask, first_id)
    return on_frame.ravel(), regions.ravel(), n


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
    pix_regions: list[np.ndarray] = []
    next_region = 1
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
                ps, regions, n = _pixel_pair(detector, frame, res.anomaly_map, s, next_region)
                pix_scores.append(ps)
                pix_regions.append(regions)
                next_region += n
        if progress:
            progress(len(chunk))
    result = EvalResult(scored, skipped)
    result.metrics = summarize(result, detector.threshold, elapsed)
    if pix_scores:
        regions, pixels = np.concatenate(pix_regions), np.concatenate(pix_scores)
        result.metrics["pixel_auroc"] = auroc(regions > 0, pixels)
        result.metrics["aupro"] = aupro(regions, pixels)
    return result


def scores_by_type(result: EvalResult) -> dict[str, np.ndarray]:
    """Defect scores per defect type (the goods are `result.scores[~result.labels]`)."""
    labels = np.array([x.sample.label for x in result.scored], dtype=object)
    s = result.scores
    return {t: s[(labels == t) & result.labels] for t in sorted(set(labels[result.labels]))}


def summarize(result: EvalResult, threshold: float, elapsed_s: float) -> dict[str, Any]:
    """The keys of `inspector evaluate --json` (ARCHITECTURE.md)."""
    y, s = result.labels, result.scores
    rates = rates_at(y, s, threshold)
    n = len(result.scored)
    goods = s[~y]
    by_type = scores_by_type(result)
    per_type = {
        t: auroc(np.r_[np.zeros(goods.size), np.ones(d.size)], np.r_[goods, d])
        for t, d in by_type.items()
    }
    return {
        "image_auroc": auroc(y, s),
        "pixel_auroc": None,
        "aupro": None,
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
        "operating_points": operating_points(goods, by_type).as_dict(),
    }
