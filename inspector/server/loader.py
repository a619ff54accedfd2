"""Load a package for serving: the same checks as `inspector.core.package.load_model`, with
ONNX Runtime's thread spinning switched off.

By default ORT's intra-op threads spin while they wait for work. In-process that costs nothing,
but in a server the spinning threads take the CPU away from decoding, HTTP and the database
(measured on 2 cores: about 30 % more frames/s with spinning off). Until `RuntimeOptions` can
say this itself (asked for in the issue-4 report), the server opens its own session here and
hands it to the core's checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from inspector.core.errors import ModelPackageError
from inspector.core.package import check_io_contract, check_outputs, open_package
from inspector.core.pipeline import Detector
from inspector.core.runtime import RuntimeOptions, choose_providers, load_onnx


def open_serving_session(
    path: Path, options: RuntimeOptions, spinning: bool
) -> ort.InferenceSession:
    """A session like `inspector.core.runtime.open_session`, plus the spinning choice."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    flag = "1" if spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", flag)
    so.add_session_config_entry("session.inter_op.allow_spinning", flag)
    return ort.InferenceSession(str(path), sess_options=so,
                                providers=choose_providers(options.providers, options.device_id))


def load_detector(
    root: Path, options: RuntimeOptions, max_pixels: int, spinning: bool = False
) -> Detector:
    """Verify a package fully (card, checksum, I/O contract, one real run) and return it."""
    package = open_package(root)
    try:
        session = open_serving_session(package.onnx_path, options, spinning)
    except Exception as exc:  # ORT raises its own exception types for bad graphs
        raise ModelPackageError(f"{package.onnx_path}: ONNX Runtime cannot load it: {exc}") from exc
    check_io_contract(session, package)
    hw = (package.card.input.height, package.card.input.width)
    try:
        model = load_onnx(package.onnx_path, hw, options, package.output_names, session)
        check_outputs(package, model.run(np.zeros((2, *hw, 3), dtype=np.uint8)), 2)
    except ModelPackageError:
        raise
    except Exception as exc:
        raise ModelPackageError(f"{package.onnx_path}: test run failed: {exc}") from exc
    return Detector(package, model, max_pixels)
