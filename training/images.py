"""Read sample images exactly as the server will see them.

Pixels go through `inspector.core.images.decode` (with the model's input size, so large JPEGs
get the same reduced-scale decode as at the line) and `inspector.core.preprocess.prepare`
(resize mode, gray handling). Unreadable files are skipped with one warning and a count.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inspector.core.card import InputSpec
from inspector.core.errors import DatasetError, ImageDecodeError
from inspector.core.images import decode, probe
from inspector.core.preprocess import prepare
from inspector.progress import track
from training.datasets import Sample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedImages:
    """Model-sized uint8 RGB images [N, H, W, 3] and the samples they came from."""

    pixels: np.ndarray
    samples: tuple[Sample, ...]
    skipped: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def is_defect(self) -> np.ndarray:
        return np.array([s.is_defect for s in self.samples], dtype=bool)


def median_aspect(samples: Sequence[Sample], limit: int = 200) -> float:
    """Median width / height of up to `limit` images, read from their headers only."""
    ratios = []
    for sample in samples[:limit]:
        try:
            header = probe(sample.path.read_bytes())
        except (OSError, ImageDecodeError):
            continue
        ratios.append(header.width / header.height)
    return float(np.median(ratios)) if ratios else 1.0


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


def read_model_input(sample: Sample, spec: InputSpec) -> np.ndarray:
    """Decode one file and resize it to the model input (raises ImageDecodeError)."""
    try:
        data = sample.path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"{sample.path}: cannot read: {exc}") from exc
    decoded = decode(data, target_size=(spec.width, spec.height))
    pixels, _ = prepare(decoded.rgb, spec)
    return pixels


def load_images(
    samples: Sequence[Sample], spec: InputSpec, description: str = "reading images"
) -> LoadedImages:
    """Read every sample; skip (and count) the unreadable ones."""
    pixels: list[np.ndarray] = []
    kept: list[Sample] = []
    skipped: list[str] = []
    for sample in track(samples, description):
        try:
            pixels.append(read_model_input(sample, spec))
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
    array = np.stack(pixels) if pixels else np.zeros(shape, dtype=np.uint8)
    return LoadedImages(array, tuple(kept), tuple(skipped))
