"""From frame bytes to verdicts: decode -> resize -> batched inference -> verdict (+ heatmap).

The steps are separate functions so that the server can run decoding in worker threads and
batch inference across concurrent requests; the CLI and evaluation call `Detector.judge_bytes`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from inspector.core import heatmap, images
from inspector.core.card import ModelCard
from inspector.core.errors import ImageDecodeError
from inspector.core.package import ModelPackage, load_model
from inspector.core.preprocess import Geometry, prepare
from inspector.core.runtime import OnnxModel, RuntimeOptions

Verdict = Literal["pass", "fail"]


def verdict_for(score: float, threshold: float) -> Verdict:
    """Fail when score >= threshold (higher scores are more defective)."""
    return "fail" if score >= threshold else "pass"


@dataclass(frozen=True)
class PreparedFrame:
    """A decoded frame and the model-sized input made from it."""

    frame: images.DecodedImage
    model_input: np.ndarray
    geometry: Geometry
    decode_ms: float


@dataclass(frozen=True)
class Judgement:
    """One frame's result."""

    score: float
    verdict: Verdict
    threshold: float
    anomaly_map: np.ndarray
    probabilities: np.ndarray | None
    label: str | None
    infer_ms: float


class Detector:
    """A verified model package with a live session."""

    def __init__(
        self,
        package: ModelPackage,
        model: OnnxModel,
        max_pixels: int = images.DEFAULT_MAX_PIXELS,
        *,
        limits: images.DecodeLimits | None = None,
    ) -> None:
        self.package = package
        self.model = model
        #: What frames may be (`limits` wins over `max_pixels` when given).
        self.limits = limits or images.DecodeLimits(max_pixels=max_pixels)
        self.max_pixels = self.limits.max_pixels

    @classmethod
    def load(
        cls,
        root: Path | str,
        options: RuntimeOptions | None = None,
        max_pixels: int = images.DEFAULT_MAX_PIXELS,
        *,
        limits: images.DecodeLimits | None = None,
    ) -> Detector:
        package, model = load_model(root, options)
        return cls(package, model, max_pixels, limits=limits)

    def with_limits(self, limits: images.DecodeLimits) -> Detector:
        """The same package and session, judging frames under other limits."""
        return Detector(self.package, self.model, limits=limits)

    @property
    def card(self) -> ModelCard:
        return self.package.card

    @property
    def threshold(self) -> float:
        return self.package.card.threshold.value

    @property
    def target_size(self) -> tuple[int, int]:
        spec = self.package.card.input
        return spec.width, spec.height

    def probe(self, data: bytes) -> images.ImageHeader:
        """The frame's header, checked against this detector's limits (no pixels decoded)."""
        lim = self.limits
        return images.probe(data, max_pixels=lim.max_pixels, max_side=lim.max_side)

    def memory_estimate(self, header: images.ImageHeader, nbytes: int) -> int:
        """Peak bytes the frame will hold while in flight (see `images.memory_estimate`)."""
        return images.memory_estimate(header, nbytes, self.target_size)

    def prepare_bytes(
        self, data: bytes, header: images.ImageHeader | None = None
    ) -> PreparedFrame:
        """Decode (reduced-scale for big JPEGs) and resize one frame; `header` is the frame's
        `probe` when the caller has it. Raises ImageDecodeError subclasses, never cv2.error."""
        t0 = time.perf_counter()
        lim = self.limits
        decoded = images.decode(data, target_size=self.target_size, max_pixels=lim.max_pixels,
                                max_side=lim.max_side, strict=lim.strict, header=header)
        try:
            model_input, geometry = prepare(decoded.rgb, self.package.card.input)
        except cv2.error as exc:
            raise ImageDecodeError(
                f"a {decoded.rgb.shape[1]}x{decoded.rgb.shape[0]} frame could not be resized "
                "to the model input", hint="send frames of ordinary size and aspect ratio",
            ) from exc
        return PreparedFrame(decoded, model_input, geometry, (time.perf_counter() - t0) * 1000)

    def prepare_array(self, rgb: np.ndarray) -> PreparedFrame:
        """Resize an already-decoded RGB uint8 frame."""
        t0 = time.perf_counter()
        model_input, geometry = prepare(rgb, self.package.card.input)
        h, w = rgb.shape[:2]
        decoded = images.DecodedImage(rgb, w, h, "array")
        return PreparedFrame(decoded, model_input, geometry, (time.perf_counter() - t0) * 1000)

    def infer(self, frames: Sequence[PreparedFrame]) -> list[Judgement]:
        """Run one batch; frames of any original size (all are model-sized by now)."""
        if not frames:
            return []
        batch = np.stack([f.model_input for f in frames])
        t0 = time.perf_counter()
        out = self.model.run(batch)
        per_frame_ms = (time.perf_counter() - t0) * 1000 / len(frames)
        threshold = self.threshold
        labels = self.package.card.labels
        probs = out.get("probabilities")
        results = []
        for i in range(len(frames)):
            score = float(out["score"][i])
            p = probs[i] if probs is not None else None
            label = labels[int(np.argmax(p))] if p is not None else None
            results.append(
                Judgement(
                    score=score,
                    verdict=verdict_for(score, threshold),
                    threshold=threshold,
                    anomaly_map=out["anomaly_map"][i],
                    probabilities=p,
                    label=label,
                    infer_ms=per_frame_ms,
                )
            )
        return results

    def judge_bytes(self, blobs: Sequence[bytes]) -> list[Judgement]:
        return self.infer([self.prepare_bytes(b) for b in blobs])

    def overlay(
        self, frame: PreparedFrame, judgement: Judgement, alpha: float | None = None,
        max_side: int | None = None,
    ) -> np.ndarray:
        """The heatmap as a colour overlay on the (possibly reduced-scale) decoded frame; with
        `max_side`, a frame whose longer side exceeds it is downscaled first (the server passes
        `heatmap.SERVER_MAX_SIDE`; None draws at the decoded frame's size)."""
        card = self.package.card
        return heatmap.overlay(
            frame.frame.rgb, judgement.anomaly_map, frame.geometry, card.input, card.heatmap, alpha,
            max_side=max_side,
        )
