"""A small synthetic data set in the MVTec layout: textured surfaces with scratches, spots and
cracks, with pixel masks. For tests, demos and smoke runs; not a benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFECT_TYPES = ("scratch", "spot", "crack")


@dataclass(frozen=True)
class SynthConfig:
    n_train: int = 60
    n_test_good: int = 20
    n_test_defect: int = 10  # per defect type
    size: int = 160
    seed: int = 0
    gray: bool = False


def surface(rng: np.random.Generator, size: int, gray: bool = False) -> np.ndarray:
    """A brushed, slightly uneven surface (BGR uint8): smooth noise + directional grain."""
    base = rng.normal(0, 1, (size // 8 + 2, size // 8 + 2)).astype(np.float32)
    low = cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC) * 6
    grain = cv2.blur(rng.normal(0, 1, (size, size)).astype(np.float32), (9, 1)) * 10
    level = 120 + rng.uniform(-10, 10)
    img = np.clip(level + low + grain, 0, 255).astype(np.uint8)
    if gray:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    tint = np.array([1.0, 0.97, 0.92]) * rng.uniform(0.95, 1.05, 3)
    return np.clip(img[..., None] * tint, 0, 255).astype(np.uint8)


def _scratch(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    s = img.shape[0]
    p1 = rng.integers(s // 6, 5 * s // 6, 2)
    angle = rng.uniform(0, np.pi)
    length = rng.uniform(0.25, 0.5) * s
    p2 = (p1 + length * np.array([np.cos(angle), np.sin(angle)])).astype(int)
    shade = int(rng.choice([30, 230]))
    for target, value in ((img, (shade,) * 3), (mask, 255)):
        cv2.line(target, tuple(map(int, p1)), tuple(map(int, p2)), value, 2, cv2.LINE_AA)


def _spot(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    s = img.shape[0]
    c = tuple(int(v) for v in rng.integers(s // 5, 4 * s // 5, 2))
    axes = tuple(int(v) for v in rng.integers(max(3, s // 30), max(5, s // 12), 2))
    angle = float(rng.uniform(0, 180))
    shade = int(rng.choice([25, 60, 210]))
    cv2.ellipse(img, c, axes, angle, 0, 360, (shade,) * 3, -1, cv2.LINE_AA)
    cv2.ellipse(mask, c, axes, angle, 0, 360, 255, -1, cv2.LINE_AA)


def _crack(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    s = img.shape[0]
    p = rng.uniform(s * 0.2, s * 0.8, 2)
    heading = rng.uniform(0, 2 * np.pi)
    pts = [p.copy()]
    for _ in range(int(rng.integers(12, 22))):
        heading += rng.normal(0, 0.5)
        p = np.clip(p + 4 * np.array([np.cos(heading), np.sin(heading)]), 1, s - 2)
        pts.append(p.copy())
    poly = np.array(pts, np.int32).reshape(-1, 1, 2)
    cv2.polylines(img, [poly], False, (35, 35, 35), 1, cv2.LINE_AA)
    cv2.polylines(mask, [poly], False, 255, 2, cv2.LINE_AA)


_PAINTERS: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator], None]] = {
    "scratch": _scratch,
    "spot": _spot,
    "crack": _crack,
}


def make_defect(
    rng: np.random.Generator, size: int, kind: str, gray: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A surface with one defect of `kind`, and its mask (uint8 0/255)."""
    img = surface(rng, size, gray)
    mask = np.zeros((size, size), np.uint8)
    _PAINTERS[kind](img, mask, rng)
    return img, np.where(mask >= 128, 255, 0).astype(np.uint8)


def write_dataset(out: Path, cfg: SynthConfig = SynthConfig()) -> dict[str, int]:
    """Write the data set; returns image counts per folder."""
    rng = np.random.default_rng(cfg.seed)
    counts: dict[str, int] = {}

    def save(folder: Path, name: str, img: np.ndarray) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / name), img)

    for split, n in (("train", cfg.n_train), ("test", cfg.n_test_good)):
        for i in range(n):
            save(out / split / "good", f"{i:03d}.png", surface(rng, cfg.size, cfg.gray))
        counts[f"{split}/good"] = n
    for kind in DEFECT_TYPES:
        for i in range(cfg.n_test_defect):
            img, mask = make_defect(rng, cfg.size, kind, cfg.gray)
            save(out / "test" / kind, f"{i:03d}.png", img)
            save(out / "ground_truth" / kind, f"{i:03d}_mask.png", mask)
        counts[f"test/{kind}"] = cfg.n_test_defect
    return counts
