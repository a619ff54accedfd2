"""Uploaded model packages: stage (unpack safely), validate fully, then install.

An upload lands in `<models_dir>/.uploads/<random>/` (same file system as the models, so the
final move is an atomic rename), is unpacked with `archive.extract`, and is validated the way
the server loads any package (signature against the trust policy, card, checksum, I/O
contract, a test batch) plus one synthetic
frame through the whole pipeline (resize, inference, verdict, heatmap overlay). Only then is it
moved to `<models_dir>/<name>/<version>/`.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspector.core.card import read_card
from inspector.core.errors import ModelPackageError
from inspector.core.package import CARD_FILE, ModelPackage, read_package_files
from inspector.core.pipeline import Detector
from inspector.core.runtime import RuntimeOptions
from inspector.core.signing import TrustPolicy, Verification
from inspector.lifecycle.archive import Limits, extract

log = logging.getLogger(__name__)

UPLOADS = ".uploads"

#: Checks an unpacked package folder before anything in it is loaded (a signature check
#: plugs in here); raises an InspectorError (ModelPackageError) to refuse the package.
PackageVerifier = Callable[[Path], None]


@dataclass(frozen=True)
class StagedPackage:
    """A validated package in its staging folder, with a live session."""

    workdir: Path
    root: Path
    detector: Detector
    unpacked_bytes: int
    smoke_ms: float
    signature: Verification | None = None

    @property
    def ref(self) -> str:
        return self.detector.card.ref


def new_workdir(models_dir: Path) -> Path:
    """A fresh private staging folder for one upload."""
    work = models_dir / UPLOADS / uuid.uuid4().hex
    work.mkdir(parents=True, mode=0o700)
    return work


def clear_stale_uploads(models_dir: Path) -> None:
    """Remove staging folders left by a crash (called at startup)."""
    shutil.rmtree(models_dir / UPLOADS, ignore_errors=True)


def find_package_root(tree: Path) -> Path:
    """The one folder in the unpacked tree that holds card.json."""
    cards = sorted(p for p in tree.rglob(CARD_FILE) if p.is_file())
    if not cards:
        raise ModelPackageError(
            "the archive holds no card.json",
            hint="upload a package folder: model.onnx, card.json and report/",
        )
    if len(cards) > 1:
        found = ", ".join(str(c.relative_to(tree)) for c in cards[:5])
        raise ModelPackageError(f"the archive holds several packages ({found})",
                                hint="upload one package per request")
    return cards[0].parent


def smoke_run(detector: Detector) -> float:
    """One synthetic frame through the whole pipeline; returns its milliseconds."""
    t0 = time.perf_counter()
    spec = detector.card.input
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(spec.height + 7, spec.width + 5, 3), dtype=np.uint8)
    prepared = detector.prepare_array(frame)
    (judgement,) = detector.infer([prepared])
    if not np.isfinite(judgement.score) or not np.all(np.isfinite(judgement.anomaly_map)):
        raise ModelPackageError(f"{detector.card.ref}: the test frame scored a non-finite value")
    overlay = detector.overlay(prepared, judgement)
    if overlay.shape[:2] != prepared.frame.rgb.shape[:2]:
        raise ModelPackageError(f"{detector.card.ref}: the heatmap overlay has the wrong size")
    return (time.perf_counter() - t0) * 1000.0


def stage(
    archive: Path,
    workdir: Path,
    limits: Limits,
    options: RuntimeOptions,
    max_pixels: int,
    precheck: Callable[[str, str, str | None], None] | None = None,
    trust: TrustPolicy | None = None,
    verify: PackageVerifier | None = None,
) -> StagedPackage:
    """Unpack and validate an uploaded or fetched archive (blocking). Raises InspectorError
    subclasses: ArchiveError / UnsupportedMediaTypeError / PayloadTooLargeError for the
    archive, ModelPackageError for the package (PackageSignatureError when `trust` refuses it,
    checked before ONNX Runtime reads the model), and whatever `precheck(name, version,
    sha256)` raises (it runs on the card before the expensive checks, e.g. to refuse a
    duplicate early) or `verify(package_root)` raises (it runs before any of the package is
    loaded)."""
    tree = workdir / "tree"
    nbytes = extract(archive, tree, limits)
    archive.unlink(missing_ok=True)
    root = find_package_root(tree)
    if verify is not None:
        verify(root)
    if precheck is not None:
        card = read_card(root / CARD_FILE)
        precheck(card.name, card.version, card.onnx_sha256)
    files = read_package_files(root)  # the signature is checked on what gets loaded
    signature = trust.check(root, files) if trust is not None else None
    detector = Detector.load(root, options, max_pixels, files=files)
    smoke_ms = smoke_run(detector)
    return StagedPackage(workdir, root, detector, nbytes, smoke_ms, signature)


def install(staged: StagedPackage, models_dir: Path) -> Detector:
    """Move the staged package to `<models_dir>/<name>/<version>/` (refusing to overwrite) and
    return its detector, now pointing at the installed folder."""
    card = staged.detector.card
    models_dir = models_dir.resolve()
    target = (models_dir / card.name / card.version).resolve()
    if not target.is_relative_to(models_dir) or target.parent.parent != models_dir:
        raise ModelPackageError(f"{card.ref}: name or version is not a plain folder name")
    if target.exists():
        raise FileExistsError(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged.root.rename(target)
    package = ModelPackage(root=target, card=card)
    return Detector(package, staged.detector.model, staged.detector.max_pixels)
