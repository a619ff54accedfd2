"""Read sample images exactly as the server will see them.

Pixels go through `inspector.core.images.decode` (with the model's input size, so large JPEGs
get the same reduced-scale decode as at the line) and `inspector.core.preprocess.prepare`
(resize mode, gray handling); for a tiled model through `inspector.core.tiles` instead, every
image cut into the tiles the server would cut it into. Unreadable files are skipped with one
warning and a count.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inspector.core import tiles
from inspector.core.card import InputSpec, TilingSpec
from inspector.core.errors import DatasetError, ImageDecodeError
from inspector.core.images import ImageHeader, decode, probe
from inspector.core.preprocess import prepare
from inspector.progress import track
from training.datasets import Sample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedImages:
    """Model-sized uint8 RGB images [rows, H, W, 3], one row per sample or, for a tiled model,
    one per tile; `owners` gives each row's sample (index into `samples`)."""

    pixels: np.ndarray
    samples: tuple[Sample, ...]
    skipped: tuple[str, ...]
    owners: np.ndarray

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def is_defect(self) -> np.ndarray:
        """Per sample."""
        return np.array([s.is_defect for s in self.samples], dtype=bool)

    def frame_scores(self, row_scores: np.ndarray) -> np.ndarray:
        """Per sample, the maximum of its rows' scores: a tiled frame's score, as the server
        computes it (one row per sample: the scores as they are)."""
        out = np.full(len(self.samples), -np.inf, dtype=np.float64)
        np.maximum.at(out, self.owners, np.asarray(row_scores, dtype=np.float64))
        return out


def _headers(samples: Sequence[Sample], limit: int) -> list[ImageHeader]:
    """Headers of up to `limit` readable images (no pixels decoded)."""
    headers = []
    for sample in samples[:limit]:
        try:
            headers.append(probe(sample.path.read_bytes()))
        except (OSError, ImageDecodeError):
            continue
    return headers


def median_aspect(samples: Sequence[Sample], limit: int = 200) -> float:
    """Median width / height of up to `limit` images, read from their headers only."""
    ratios = [h.width / h.height for h in _headers(samples, limit)]
    return float(np.median(ratios)) if ratios else 1.0


def median_size(samples: Sequence[Sample], limit: int = 200) -> tuple[int, int] | None:
    """Median width and height of up to `limit` images (headers only); None when none reads."""
    headers = _headers(samples, limit)
    if not headers:
        return None
    return (int(np.median([h.width for h in headers])),
            int(np.median([h.height for h in headers])))


def input_size(image_size: int, aspect: float, multiple: int = 32) -> tuple[int, int]:
    """(width, height) of about image_size^2 pixels with the given aspect ratio, each side a
    multiple of `multiple` (the backbone's coarsest stride): square unless the aspect is
    outside [3/4, 4/3]."""
    if 0.75 <= aspect <= 4 / 3:
        return image_size, image_size
    area = float(image_size * image_size)
    width = max(multiple, round((area * aspect) ** 0.5 / multiple) * multiple)
    height = max(multiple, round((area / aspect) ** 0.5 / multiple) * multiple)
    return int(width), int(height)


def read_model_input(
    sample: Sample, spec: InputSpec, tiling: TilingSpec | None = None
) -> np.ndarray:
    """Decode one file and resize it to the model input: [H, W, 3], or every tile of it
    [tiles, H, W, 3] when `tiling` is given (raises ImageDecodeError)."""
    try:
        data = sample.path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"{sample.path}: cannot read: {exc}") from exc
    if tiling is None:
        decoded = decode(data, target_size=(spec.width, spec.height))
        pixels, _ = prepare(decoded.rgb, spec)
        return pixels
    header = probe(data)
    decoded = decode(data, header=header,
                     target_size=tiles.decode_target(header.width, header.height, tiling, spec))
    return tiles.cut_frame(decoded.rgb, decoded.reduction, tiling, spec)[1]


def load_images(
    samples: Sequence[Sample], spec: InputSpec, description: str = "reading images",
    tiling: TilingSpec | None = None,
) -> LoadedImages:
    """Read every sample (cut into tiles when `tiling` is given); skip (and count) the
    unreadable ones."""
    pixels: list[np.ndarray] = []
    owners: list[int] = []
    kept: list[Sample] = []
    skipped: list[str] = []
    for sample in track(samples, description):
        try:
            rows = read_model_input(sample, spec, tiling)
            rows = rows[None] if tiling is None else rows
            pixels.append(rows)
            owners += [len(kept)] * len(rows)
        except ImageDecodeError as exc:
            skipped.append(f"{sample.path}: {exc}")
            continue
        kept.append(sample)
    if skipped:
        log.warning(
            "skipped %d unreadable image(s) of %d, first: %s",
            len(skipped),
            len(samples),
            skipped[0],
        )
    if not kept and samples:
        raise DatasetError(
            f"none of the {len(samples)} images could be read (first: {skipped[0]})",
            hint="check that the files are PNG/JPEG/BMP/TIFF images",
        )
    shape = (0, spec.height, spec.width, 3)
    array = np.concatenate(pixels) if pixels else np.zeros(shape, dtype=np.uint8)
    return LoadedImages(array, tuple(kept), tuple(skipped), np.array(owners, dtype=np.int64))
