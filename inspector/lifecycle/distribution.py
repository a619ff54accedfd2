"""Model packages across the fleet: share what this node has, fetch what it lacks.

Sharing packs a package folder into a reproducible archive (`archive.pack`: one package, one
sha256 on every node), puts it in the package store and records the checksum with the
version. Fetching gets the archive by that checksum (the store verifies it), then treats it
exactly like an upload: safe unpacking, `verify` (the signature hook), card and model
checksum, I/O contract, a test frame through the pipeline, and only then the move into
`<models_dir>/<name>/<version>/`.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from inspector.core.card import ModelCard
from inspector.core.errors import ModelPackageError
from inspector.core.names import ModelRef
from inspector.core.pipeline import Detector
from inspector.core.runtime import RuntimeOptions
from inspector.core.signing import TrustPolicy, Verification
from inspector.lifecycle import uploads
from inspector.lifecycle.archive import Limits, pack
from inspector.lifecycle.errors import NotFoundError
from inspector.store import deployments
from inspector.store.db import Database
from inspector.store.packages import PackageStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fleet:
    """What a node needs to share and fetch packages."""

    db: Database
    store: PackageStore
    models_dir: Path
    limits: Limits
    verify: uploads.PackageVerifier | None = None


def share(fleet: Fleet, root: Path, card: ModelCard) -> str:
    """Put the package at `root` in the store (once) and record its archive's checksum; skips
    the packing when the version is already shared with the same model checksum."""
    known = deployments.package_sha(fleet.db, card.name, card.version)
    same_model = deployments.model_version_sha(fleet.db, card.name, card.version) \
        == card.onnx_sha256
    if known is not None and same_model and fleet.store.exists(known):
        return known
    work = uploads.new_workdir(fleet.models_dir)
    try:
        archive = work / "package.tar.gz"
        pack(root, archive)
        sha = fleet.store.put(archive)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    deployments.set_package_sha(fleet.db, card.name, card.version, sha)
    log.info("shared %s in the package store (%s)", card.ref, sha[:12])
    return sha


def fetch(fleet: Fleet, ref: ModelRef, options: RuntimeOptions, max_pixels: int,
          trust: TrustPolicy | None = None) -> tuple[Detector, Verification | None]:
    """Get `ref` from the store, validate it like an upload (its signature against `trust`
    included), install it in the models folder and return its detector and checked signature
    (blocking). NotFoundError when the store does not have it."""
    sha = deployments.package_sha(fleet.db, ref.name, ref.version)
    if sha is None:
        raise NotFoundError(f"model {ref} is not installed here and not in the package store",
                            hint="upload it with POST /v1/models")
    expected = deployments.model_version_sha(fleet.db, ref.name, ref.version)

    def same_version(name: str, version: str, onnx_sha: str | None) -> None:
        if (name, version) != (ref.name, ref.version) or onnx_sha != expected:
            raise ModelPackageError(f"the package stored for {ref} holds {name}:{version} "
                                    f"with model checksum {onnx_sha}",
                                    hint="upload the package again")

    work = uploads.new_workdir(fleet.models_dir)
    try:
        archive = work / "package.tar.gz"
        fleet.store.get(sha, archive)
        staged = uploads.stage(archive, work, fleet.limits, options, max_pixels,
                               precheck=same_version, trust=trust, verify=fleet.verify)
        try:
            detector = uploads.install(staged, fleet.models_dir)
        except FileExistsError:  # fetched at the same time by another path: use that copy
            detector = Detector.load(fleet.models_dir / ref.name / ref.version, options,
                                     max_pixels)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("fetched %s from the package store (%s)", ref, sha[:12])
    return detector, staged.signature
