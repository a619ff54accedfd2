"""From frame bytes to verdicts: decode -> resize -> batched inference -> verdict (+ heatmap).

The steps are separate functions so that the server can run decoding in worker threads and
batch inference across concurrent requests; the CLI and evaluation call `Detector.judge_bytes`.
A package whose card has a `tiling` section is run tiled (`core.tiles`): preparing a frame cuts
it into model-sized tiles, inference runs every tile and stitches their maps into one map of the
whole frame; callers see one frame, one score and one map either way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from inspector.core import heatmap, images, tiles
from inspector.core.card import InputSpec, ModelCard, TilingSpec
from inspector.core.errors import ImageDecodeError
from inspector.core.package import ModelPackage, PackageFiles, load_model
from inspector.core.preprocess import Geometry, prepare
from inspector.core.runtime import OnnxModel, RuntimeOptions

Verdict = Literal["pass", "fail"]
#: What turns a decoded frame into model input: two detectors with equal values can share it.
Preprocessing = tuple[InputSpec, TilingSpec | None]


def verdict_for(score: float, threshold: float) -> Verdict:
    """Fail when score >= threshold (higher scores are more defective)."""
    return "fail" if score >= threshold else "pass"


@dataclass(frozen=True)
class PreparedFrame:
    """A decoded frame and the model-sized input made from it: one image [H, W, 3], or for a
    tiled model every tile [count, H, W, 3] and where the tiles lie (`grid`)."""

    frame: images.DecodedImage
    model_input: np.ndarray
    geometry: Geometry
    decode_ms: float
    grid: tiles.TileGrid | None = None


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
        files: PackageFiles | None = None,
    ) -> Detector:
        """Load a package; with `files` (read once, e.g. for a signature check), from those
        bytes and not the disk again."""
        package, model = load_model(root, options, files)
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

    @property
    def tiling(self) -> TilingSpec | None:
        return self.package.card.tiling

    @property
    def preprocessing(self) -> Preprocessing:
        return self.package.card.input, self.package.card.tiling

    def decode_target(self, header: images.ImageHeader) -> tuple[int, int]:
        """The size a frame is decoded at no smaller than (big JPEGs decode at reduced scale):
        the model input, or for a tiled model the frame at the model's scale."""
        if self.tiling is None:
            return self.target_size
        return tiles.decode_target(header.width, header.height, self.tiling, self.card.input)

    def tile_grid(self, header: images.ImageHeader) -> tiles.TileGrid:
        """The tiles a frame will be cut into (tiled models only); ImageTooLargeError when they
        are too many."""
        if self.tiling is None:
            raise ValueError(f"{self.card.ref} is not a tiled model")
        target = self.decode_target(header)
        w, h = images.decoded_size(header, target)
        return tiles.plan(w, h, self.tiling, images.decode_reduction(header, target))

    def probe(self, data: bytes) -> images.ImageHeader:
        """The frame's header, checked against this detector's limits (no pixels decoded),
        and for a tiled model its tile count against `tiles.MAX_TILES`."""
        lim = self.limits
        header = images.probe(data, max_pixels=lim.max_pixels, max_side=lim.max_side)
        if self.tiling is not None:
            self.tile_grid(header)
        return header

    def memory_estimate(self, header: images.ImageHeader, nbytes: int) -> int:
        """Peak bytes the frame will hold while in flight (see `images.memory_estimate`), with
        its tiles and maps for a tiled model (`tiles.tile_bytes`)."""
        estimate = images.memory_estimate(header, nbytes, self.decode_target(header))
        if self.tiling is not None:
            in_flight = self.model.options.max_batch * self.model.chunk_lanes
            estimate += tiles.tile_bytes(self.tile_grid(header), self.card.input, in_flight)
        return estimate

    def prepare_bytes(
        self, data: bytes, header: images.ImageHeader | None = None
    ) -> PreparedFrame:
        """Decode (reduced-scale for big JPEGs) and resize (or tile) one frame; `header` is the
        frame's `probe` when the caller has it. Raises ImageDecodeError subclasses, never
        cv2.error."""
        t0 = time.perf_counter()
        lim = self.limits
        header = header or self.probe(data)
        decoded = images.decode(data, target_size=self.decode_target(header),
                                max_pixels=lim.max_pixels, max_side=lim.max_side,
                                strict=lim.strict, header=header)
        return self._prepare(decoded, t0)

    def prepare_array(self, rgb: np.ndarray) -> PreparedFrame:
        """Resize (or tile) an already-decoded RGB uint8 frame."""
        h, w = rgb.shape[:2]
        return self._prepare(images.DecodedImage(rgb, w, h, "array"), time.perf_counter())

    def _prepare(self, decoded: images.DecodedImage, t0: float) -> PreparedFrame:
        rgb, spec = decoded.rgb, self.card.input
        grid = None
        try:
            if self.tiling is None:
                model_input, geometry = prepare(rgb, spec)
            else:
                grid, model_input = tiles.cut_frame(rgb, decoded.reduction, self.tiling, spec)
                # The stitched map covers the whole frame, like a whole-frame stretch.
                geometry = Geometry(grid.frame_width, grid.frame_height, 0.0, 0.0,
                                    float(spec.width), float(spec.height))
        except cv2.error as exc:
            raise ImageDecodeError(
                f"a {rgb.shape[1]}x{rgb.shape[0]} frame could not be resized "
                "to the model input", hint="send frames of ordinary size and aspect ratio",
            ) from exc
        return PreparedFrame(decoded, model_input, geometry, (time.perf_counter() - t0) * 1000,
                             grid)

    def infer(self, frames: Sequence[PreparedFrame]) -> list[Judgement]:
        """Run one batch; frames of any original size (all are model-sized by now)."""
        if not frames:
            return []
        if self.tiling is not None:
            return self._infer_tiled(frames)
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

    def _infer_tiled(self, frames: Sequence[PreparedFrame]) -> list[Judgement]:
        """Every tile of every frame, in chunks of max_batch, several chunks at once on a CPU
        (`OnnxModel.run_chunks`: one frame's tiles keep every core busy); each chunk's maps
        are stitched as it comes back, so only the chunks in flight hold maps. Score = the
        maximum over a frame's tiles, map = the stitched map (`tiles.Stitcher`)."""
        rows = [(n, i) for n, f in enumerate(frames) for i in range(len(f.model_input))]
        stitchers = [tiles.Stitcher(_grid(f)) for f in frames]
        step = max(1, self.model.options.max_batch)
        chunks = [rows[start : start + step] for start in range(0, len(rows), step)]
        batches = (np.stack([frames[n].model_input[i] for n, i in chunk]) for chunk in chunks)
        t0 = time.perf_counter()
        for chunk, out in zip(chunks, self.model.run_chunks(batches), strict=True):
            for k, (n, i) in enumerate(chunk):
                stitchers[n].add(i, out["anomaly_map"][k], float(out["score"][k]))
        per_frame_ms = (time.perf_counter() - t0) * 1000 / len(frames)
        threshold = self.threshold
        results = []
        for stitched in stitchers:
            results.append(Judgement(
                score=stitched.score, verdict=verdict_for(stitched.score, threshold),
                threshold=threshold, anomaly_map=stitched.result(), probabilities=None,
                label=None, infer_ms=per_frame_ms,
            ))
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


def _grid(frame: PreparedFrame) -> tiles.TileGrid:
    if frame.grid is None:
        raise ValueError("a whole frame was given to a tiled model: prepare it with its detector")
    return frame.grid
