"""fp16 packages: the graph's arithmetic in half precision, its contract unchanged.

The converted graph still takes uint8 `image` and returns float32 outputs (casts at the edges:
onnxconverter-common's `keep_io_types`), so the server, Triton and every client treat it as any
other package. Before the package is written, its graph runs beside the fp32 graph on ONNX
Runtime's CPU over the same images; scores and maps must agree within a tolerance relative to
the fp32 figures, and the verdicts at the card's threshold must not flip. A package that fails
is never written. The card records `export.precision: fp16` and the parity figures.

On a CPU an fp16 graph is slower than fp32 (ONNX Runtime casts back for most operators); it
is made for GPUs, where the CUDA provider runs it natively.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.core.card import ModelCard, PrecisionParity, write_card
from inspector.core.errors import InspectorError
from inspector.core.names import NAME_RE
from inspector.core.package import MODEL_FILE, REPORT_DIR, load_model, sha256_file
from inspector.core.pipeline import Detector
from inspector.core.runtime import OnnxModel, RuntimeOptions
from inspector.export.errors import ExportError

log = logging.getLogger(__name__)

#: Largest allowed difference, as a share of the fp32 graph's largest |score| (and, for the
#: maps, of its largest |map| value).
DEFAULT_TOLERANCE = 0.02
CPU = RuntimeOptions(providers="cpu", max_batch=8)


@dataclass(frozen=True)
class Fp16Result:
    """A written fp16 package and how it agreed with its fp32 source."""

    root: Path
    card: ModelCard
    parity: PrecisionParity


def convert_graph(src: Path, dst: Path) -> None:
    """Write `src`'s graph in fp16 to `dst`, keeping the uint8 input and float32 outputs."""
    try:
        import onnx
        from onnxconverter_common import float16
    except ModuleNotFoundError as exc:
        raise ExportError(f"fp16 conversion needs {exc.name}, which is not installed",
                          hint="pip install 'inspector[export]'") from exc
    model = onnx.load(str(src))
    _detach_outputs(model.graph)
    try:
        with warnings.catch_warnings():  # one line per tiny weight rounded: the parity
            warnings.simplefilter("ignore")  # check below judges the result as a whole
            converted = float16.convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:  # the converter raises plain exceptions for graphs it cannot do
        raise ExportError(f"{src}: the fp16 converter failed: {exc}") from exc
    _retarget_casts(converted.graph)
    onnx.save(converted, str(dst))


def _detach_outputs(graph: Any) -> None:
    """Give each graph output that other nodes also read (score = max of anomaly_map) an
    inner twin: the nodes read the twin, an Identity feeds the output. The converter mixes
    types where an output is read inside the graph; this way only the Identity is kept at
    float32 (`keep_io_types`) and the graph's inner arithmetic stays fp16."""
    from onnx import helper

    outputs = {o.name for o in graph.output}
    read = {name for node in graph.node for name in node.input} & outputs
    for name in sorted(read):
        inner = f"{name}__fp16_inner"
        for node in graph.node:
            node.input[:] = [inner if i == name else i for i in node.input]
            node.output[:] = [inner if o == name else o for o in node.output]
        graph.node.append(helper.make_node("Identity", [inner], [name]))


def _retarget_casts(graph: Any) -> None:
    """Casts to float inside the graph (uint8 image -> float) now feed fp16 arithmetic: the
    converter types their outputs fp16 but leaves `to` at float, which ONNX Runtime refuses.
    Point them at fp16; the casts back to float32 before the outputs keep theirs."""
    from onnx import TensorProto

    fp16 = {v.name for v in graph.value_info if v.type.tensor_type.elem_type
            == TensorProto.FLOAT16}
    for node in graph.node:
        if node.op_type == "Cast" and node.output[0] in fp16:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16


def synthetic_inputs(height: int, width: int, n: int = 16, seed: int = 0) -> np.ndarray:
    """Textured frames at the model's size, every other one with a bright spot: inputs that
    exercise both low and high scores when no images are given."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(20, 90, size=(n, height, width, 3), dtype=np.uint8)
    yy, xx = np.ogrid[:height, :width]
    for i in range(1, n, 2):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        r = max(2, min(height, width) // 10)
        frames[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 240
    return frames


def image_inputs(detector: Detector, blobs: Sequence[bytes]) -> np.ndarray:
    """Image files' bytes, decoded and resized as the server does for this package."""
    inputs = []
    for blob in blobs:
        try:
            inputs.append(detector.prepare_bytes(blob).model_input)
        except InspectorError as exc:
            raise ExportError(f"a parity image could not be read: {exc}") from exc
    return np.stack(inputs)


def compare(fp32: OnnxModel, fp16: OnnxModel, inputs: np.ndarray, threshold: float,
            tolerance: float, source_sha256: str) -> PrecisionParity:
    """Run both graphs on the same inputs and measure how far apart they are."""
    a, b = fp32.run(inputs), fp16.run(inputs)
    return PrecisionParity(
        n_images=len(inputs),
        max_abs_diff_score=float(np.abs(a["score"] - b["score"]).max()),
        max_abs_diff_map=float(np.abs(a["anomaly_map"] - b["anomaly_map"]).max()),
        score_scale=float(np.abs(a["score"]).max()),
        map_scale=float(np.abs(a["anomaly_map"]).max()),
        tolerance=tolerance,
        verdict_flips=int(np.sum((a["score"] >= threshold) != (b["score"] >= threshold))),
        source_sha256=source_sha256,
    )


def parity_problems(p: PrecisionParity, max_flips: int) -> list[str]:
    """What is over the tolerance, in words; [] when the fp16 graph may ship."""
    problems = []
    allowed = p.tolerance * max(p.score_scale, 1e-6)
    if not p.max_abs_diff_score <= allowed:
        problems.append(f"scores differ by up to {p.max_abs_diff_score:.3g} (allowed "
                        f"{allowed:.3g}: {p.tolerance:g} x the largest score {p.score_scale:.3g})")
    allowed_map = p.tolerance * max(p.map_scale, 1e-6)
    if not p.max_abs_diff_map <= allowed_map:
        problems.append(f"maps differ by up to {p.max_abs_diff_map:.3g} (allowed "
                        f"{allowed_map:.3g}: {p.tolerance:g} x the largest map value "
                        f"{p.map_scale:.3g})")
    if p.verdict_flips > max_flips:
        problems.append(f"{p.verdict_flips} of {p.n_images} verdicts flip at the threshold "
                        f"(allowed {max_flips})")
    return problems


def _staging(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out}: already exists and is not empty",
                          hint="give --out a new folder (models/NAME/NEW_VERSION)")
    stage = out.parent / f".{out.name}.fp16-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def export_fp16(
    model_dir: Path, out: Path, *, version: str | None = None,
    images: Sequence[bytes] = (), tolerance: float = DEFAULT_TOLERANCE, max_flips: int = 0,
) -> Fp16Result:
    """Convert a package to fp16 and write it to `out` when it passes the parity check."""
    fp32 = Detector.load(model_dir, CPU)
    card = fp32.card
    new_version = version or f"{card.version}-fp16"
    if not NAME_RE.match(new_version):
        raise ExportError(f"version {new_version!r} is not a valid name",
                          hint="letters, digits, '.', '_' and '-', up to 64 characters")
    spec = card.input
    inputs = (image_inputs(fp32, images) if images
              else synthetic_inputs(spec.height, spec.width))
    stage = _staging(out)
    try:
        convert_graph(fp32.package.onnx_path, stage / MODEL_FILE)
        report = fp32.package.report_dir
        if report.is_dir():
            shutil.copytree(report, stage / REPORT_DIR)
        new = card.model_copy(update={
            "version": new_version, "onnx_sha256": sha256_file(stage / MODEL_FILE),
            "description": (card.description + " (fp16)").strip(),
        })
        write_card(new, stage / "card.json")
        _, half = load_model(stage, CPU)  # the converted graph keeps the package contract
        parity = compare(fp32.model, half, inputs, fp32.threshold, tolerance, card.onnx_sha256)
        problems = parity_problems(parity, max_flips)
        if problems:
            raise ExportError(f"{model_dir}: fp16 graph disagrees with fp32 on "
                              f"{parity.n_images} images: {'; '.join(problems)}",
                              hint="keep the fp32 package, or raise --tolerance knowingly")
        export = new.export.model_copy(update={"precision": "fp16", "fp16_parity": parity})
        new = new.model_copy(update={"export": export})
        write_card(new, stage / "card.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()  # empty, checked in _staging
        stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("wrote fp16 package %s to %s", new.ref, out)
    return Fp16Result(out, new, parity)
