"""ONNX export with the package I/O contract, checked and compared against PyTorch.

The graph takes `image` uint8 [N, H, W, 3] (dynamic N) and returns the outputs that
`inspector.core.package.OUTPUT_NAMES` lists for the model's kind (`score` [N], `anomaly_map`
[N, h, w], plus `probabilities` [N, C] for a classifier), in the order the PyTorch model
returns them. Export always runs onnx.checker and a parity run on real images, comparing
outputs by name; scores that disagree beyond tolerance fail the export instead of shipping a
model that behaves differently from the one evaluated.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from inspector.core.package import INPUT_NAME
from inspector.core.runtime import RuntimeOptions, open_session
from training.errors import TrainingError

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18


class ExportError(TrainingError):
    """The exported graph is invalid or disagrees with the PyTorch model."""


@dataclass(frozen=True)
class Parity:
    """Largest differences between PyTorch and ONNX Runtime on the same uint8 images."""

    n_images: int
    max_abs_diff_score: float
    max_abs_diff_map: float
    #: Largest |score| PyTorch gave on these images: the scale the tolerance is relative to.
    score_scale: float


def export_onnx(
    model: nn.Module,
    path: Path,
    input_hw: tuple[int, int],
    output_names: Sequence[str],
    opset: int = DEFAULT_OPSET,
) -> None:
    """Export `model` (uint8 NHWC in, a tuple of outputs) to `path` and run onnx.checker."""
    model = model.eval()
    h, w = input_hw
    example = (torch.zeros(2, h, w, 3, dtype=torch.uint8),)
    batch = torch.export.Dim("batch", min=1, max=1024)
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            example,
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(output_names),
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
        if program is None:  # pragma: no cover - dynamo export always returns a program
            raise ExportError("torch.onnx.export returned nothing")
        program.optimize()
        program.save(str(path), external_data=False)
    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: onnx.checker rejected the graph: {exc}") from exc
    got = {o.name for o in proto.graph.output}
    if got != set(output_names):
        raise ExportError(f"{path}: outputs are {sorted(got)}, expected {list(output_names)}")


@torch.no_grad()
def parity(
    model: nn.Module,
    onnx_path: Path,
    images: np.ndarray,
    output_names: Sequence[str],
    batch_size: int = 8,
) -> Parity:
    """Run the same uint8 images through PyTorch and ONNX Runtime (CPU) and compare."""
    session = open_session(onnx_path, RuntimeOptions(providers="cpu"))
    names = list(output_names)
    found = [o.name for o in session.get_outputs()]
    if sorted(found) != sorted(names):
        raise ExportError(f"{onnx_path}: outputs are {found}, expected {names}")
    diffs = dict.fromkeys(names, 0.0)
    scale = 0.0
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        # The PyTorch model returns a tuple in `output_names` order: name it once, here.
        torch_out = dict(zip(names, model(torch.from_numpy(batch)), strict=True))
        ort_out = dict(zip(names, session.run(names, {INPUT_NAME: batch}), strict=True))
        for name in names:
            t, o = torch_out[name].numpy(), ort_out[name]
            if o.shape != t.shape:
                raise ExportError(
                    f"{onnx_path}: output '{name}' is {o.shape} in ONNX, {t.shape} in PyTorch"
                )
            diffs[name] = max(diffs[name], float(np.abs(o - t).max()) if t.size else 0.0)
        scale = max(scale, float(np.abs(torch_out["score"].numpy()).max()))
    return Parity(len(images), diffs["score"], diffs["anomaly_map"], scale)


def check_parity(result: Parity, tolerance: float, where: Path) -> None:
    """Fail when any score differs by more than `tolerance` times the largest score."""
    allowed = tolerance * max(result.score_scale, 1e-6)
    if not result.max_abs_diff_score <= allowed:
        raise ExportError(
            f"{where}: ONNX scores differ from PyTorch by up to {result.max_abs_diff_score:.3g} "
            f"on {result.n_images} images, over the tolerance {allowed:.3g} "
            f"({tolerance:g} x the largest score {result.score_scale:.3g})",
        )
    log.info(
        "parity on %d images: score %.2e (scale %.3g), map %.2e",
        result.n_images,
        result.max_abs_diff_score,
        result.score_scale,
        result.max_abs_diff_map,
    )
