"""Model packages: `models/<name>/<version>/` with `model.onnx`, `card.json` and `report/`.

Loading verifies, in order: the card (schema), the sha256 of `model.onnx` against the card, and
the graph's I/O contract. Every failure names the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inspector.core.card import ModelCard, parse_card
from inspector.core.errors import ModelPackageError
from inspector.core.runtime import (
    OnnxModel,
    RuntimeOptions,
    load_onnx,
    open_session,
    plan_for,
)

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"
REPORT_DIR = "report"
SIGNATURE_FILE = "signature.json"

#: The graph's input and outputs, by model kind, with each output's rank (the I/O contract:
#: models/README.md). Export names its outputs from here and the checks compare by name.
INPUT_NAME = "image"
OUTPUT_RANKS: dict[str, int] = {"score": 1, "anomaly_map": 3, "probabilities": 2}
OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "anomaly": ("score", "anomaly_map"),
    "classifier": ("score", "anomaly_map", "probabilities"),
    "hybrid": ("score", "anomaly_map", "probabilities"),
}

_ORT_UINT8 = "tensor(uint8)"
_ORT_FLOAT = "tensor(float)"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelPackage:
    """A verified package on disk (card checked, checksum matched)."""

    root: Path
    card: ModelCard

    @property
    def onnx_path(self) -> Path:
        return self.root / MODEL_FILE

    @property
    def card_path(self) -> Path:
        return self.root / CARD_FILE

    @property
    def report_dir(self) -> Path:
        return self.root / REPORT_DIR

    @property
    def output_names(self) -> list[str]:
        return list(OUTPUT_NAMES[self.card.kind])


@dataclass(frozen=True, repr=False)
class PackageFiles:
    """One read of a package's card, model and signature. The checksum, the signature check
    and ONNX Runtime all use these bytes, so a file swapped on disk between the checks and the
    load (by anyone who can write the models folder) is never what runs."""

    root: Path
    card: bytes
    model: bytes
    #: signature.json's bytes, None when the package has none.
    signature: bytes | None

    @property
    def model_sha256(self) -> str:
        return hashlib.sha256(self.model).hexdigest()


def read_package_files(root: Path | str) -> PackageFiles:
    """Read card.json, model.onnx and signature.json once (ModelPackageError when the folder
    or a required file is missing)."""
    root = require_folder(root)
    card_path, model_path, sig_path = root / CARD_FILE, root / MODEL_FILE, root / SIGNATURE_FILE
    if not model_path.is_file():
        raise ModelPackageError(f"{model_path}: model.onnx is missing")
    if not card_path.is_file():
        raise ModelPackageError(f"{card_path}: card.json is missing",
                                hint="a model package needs model.onnx and card.json")
    try:
        card, model = card_path.read_bytes(), model_path.read_bytes()
        signature = sig_path.read_bytes() if sig_path.is_file() else None
    except OSError as exc:
        raise ModelPackageError(f"{root}: cannot read the package: {exc}") from exc
    return PackageFiles(root, card, model, signature)


def require_folder(root: Path | str) -> Path:
    """`root` as a Path, or ModelPackageError when it is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise ModelPackageError(
            f"{root}: not a folder", hint="pass a package folder models/<name>/<version>/"
        )
    return root


def open_package(root: Path | str, files: PackageFiles | None = None) -> ModelPackage:
    """Read the card and verify the checksum (of `files` when given, read once by the
    caller); does not start a session."""
    files = files or read_package_files(root)
    root = files.root
    onnx_path = root / MODEL_FILE
    card = parse_card(root / CARD_FILE, files.card)
    actual = files.model_sha256
    if actual != card.onnx_sha256:
        raise ModelPackageError(
            f"{onnx_path}: sha256 {actual} does not match card.json onnx_sha256 {card.onnx_sha256}",
            hint="the file was changed or corrupted after export; re-export or re-copy the package",
        )
    return ModelPackage(root=root, card=card)


def check_io_contract(session: ort.InferenceSession, package: ModelPackage) -> None:
    """Check the graph's inputs and outputs against the contract and the card."""
    where = package.onnx_path
    card = package.card
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        names = [i.name for i in inputs]
        raise ModelPackageError(f"{where}: expected one input named '{INPUT_NAME}', found {names}")
    inp = inputs[0]
    if inp.type != _ORT_UINT8:
        raise ModelPackageError(f"{where}: input 'image' must be uint8, found {inp.type}")
    shape = list(inp.shape)
    if len(shape) != 4:
        raise ModelPackageError(f"{where}: input 'image' must be [N, H, W, 3], found {shape}")
    _, h, w, c = shape
    expected = (card.input.height, card.input.width, 3)
    for got, want, axis in zip((h, w, c), expected, ("H", "W", "C"), strict=True):
        if isinstance(got, int) and got != want:
            raise ModelPackageError(
                f"{where}: input 'image' axis {axis} is {got} but card.json says {want}",
                hint="input size in card.json must match the graph",
            )
    outputs = {o.name: o for o in session.get_outputs()}
    wanted = {name: OUTPUT_RANKS[name] for name in OUTPUT_NAMES[card.kind]}
    for name, rank in wanted.items():
        out = outputs.get(name)
        if out is None:
            raise ModelPackageError(
                f"{where}: output '{name}' is missing (found {sorted(outputs)})",
                hint=f"a {card.kind} model must output {', '.join(wanted)}",
            )
        if out.type != _ORT_FLOAT:
            raise ModelPackageError(f"{where}: output '{name}' must be float32, found {out.type}")
        if len(out.shape) != rank:
            raise ModelPackageError(
                f"{where}: output '{name}' must have rank {rank}, found shape {out.shape}"
            )
    if "probabilities" in wanted:
        c_dim = outputs["probabilities"].shape[1]
        if isinstance(c_dim, int) and c_dim != len(card.labels):
            raise ModelPackageError(
                f"{where}: 'probabilities' has {c_dim} classes but card.json lists "
                f"{len(card.labels)} labels"
            )


def check_outputs(package: ModelPackage, outputs: dict[str, np.ndarray], n: int) -> None:
    """Check the shapes of a real run's outputs (dynamic axes are only known at run time)."""
    where = package.onnx_path
    score, amap = outputs["score"], outputs["anomaly_map"]
    if score.shape != (n,):
        raise ModelPackageError(f"{where}: 'score' came back {score.shape}, expected ({n},)")
    if amap.ndim != 3 or amap.shape[0] != n or min(amap.shape[1:]) < 1:
        raise ModelPackageError(f"{where}: 'anomaly_map' came back {amap.shape}, expected [N,h,w]")
    if "probabilities" in outputs:
        probs = outputs["probabilities"]
        if probs.shape != (n, len(package.card.labels)):
            raise ModelPackageError(f"{where}: 'probabilities' came back {probs.shape}")
    if not np.all(np.isfinite(score)):
        raise ModelPackageError(f"{where}: 'score' is not finite on a test batch")


def load_model(
    root: Path | str, options: RuntimeOptions | None = None, files: PackageFiles | None = None
) -> tuple[ModelPackage, OnnxModel]:
    """Verify a package fully (card, checksum, I/O contract, one real run) and return it with a
    warmed-up session. On TensorRT the engine is built here (or read from its cache), so a
    load may take minutes, said in the log, and the first frame never waits for it.

    The session is made from the very bytes whose checksum was verified (`files`, when the
    caller also checked a signature on them; else read here once), never re-read from disk."""
    files = files or read_package_files(root)
    package = open_package(root, files)
    options = options or RuntimeOptions()
    card = package.card
    hw = (card.input.height, card.input.width)
    plan = plan_for(options, card.onnx_sha256, hw)
    building = plan.kind == "tensorrt" and not plan.engine_built
    if building:
        log.info("building TensorRT engine for %s (may take minutes; cached in %s)",
                 card.ref, plan.engine_cache or "no cache")
    t0 = time.perf_counter()
    try:
        session = open_session(package.onnx_path, options, plan, model_bytes=files.model)
    except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
        raise ModelPackageError(f"{package.onnx_path}: ONNX Runtime cannot load it: {exc}") from exc
    check_io_contract(session, package)
    try:
        model = load_onnx(package.onnx_path, hw, options, package.output_names, session, plan)
        check_outputs(package, model.run(np.zeros((2, *hw, 3), dtype=np.uint8)), 2)
    except ModelPackageError:
        raise
    except Exception as exc:
        raise ModelPackageError(f"{package.onnx_path}: test run failed: {exc}") from exc
    if building and model.kind == "tensorrt":
        log.info("TensorRT engine for %s built in %.1f s", card.ref, time.perf_counter() - t0)
    model.stats.reset()
    return package, model
