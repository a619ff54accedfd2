"""Tiny ONNX model packages built with onnx.helper (no torch), honouring the I/O contract.

The graph scores brightness: anomaly_map = 4x4-pooled gray level / 255, score = its maximum.
So a bright spot on a dark part is a "defect", which makes outcomes easy to predict in tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from inspector.core.card import HeatmapSpec, InputSpec, ModelCard, ThresholdSpec, write_card
from inspector.core.package import sha256_file

OPSET = 17


def brightness_graph(
    height: int, width: int, *, classifier: bool = False, pool: int = 4
) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Cast", ["image"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["xf"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("ReduceMean", ["nchw"], ["gray"], axes=[1], keepdims=1),
        helper.make_node(
            "AveragePool", ["gray"], ["pooled"], kernel_shape=[pool, pool], strides=[pool, pool]
        ),
        helper.make_node(
            "Constant",
            [],
            ["axis1"],
            value=helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
        ),
        helper.make_node("Squeeze", ["pooled", "axis1"], ["map255"]),
        helper.make_node(
            "Constant",
            [],
            ["k255"],
            value=helper.make_tensor("k255", TensorProto.FLOAT, [], [255.0]),
        ),
        helper.make_node("Div", ["map255", "k255"], ["anomaly_map"]),
        helper.make_node("ReduceMax", ["anomaly_map"], ["score"], axes=[1, 2], keepdims=0),
    ]
    outputs = [
        helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info(
            "anomaly_map", TensorProto.FLOAT, ["N", height // pool, width // pool]
        ),
    ]
    if classifier:
        nodes += [
            helper.make_node("Unsqueeze", ["score", "axis1"], ["s1"]),
            helper.make_node(
                "Constant",
                [],
                ["one"],
                value=helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
            ),
            helper.make_node("Sub", ["one", "s1"], ["good"]),
            helper.make_node("Concat", ["good", "s1"], ["probabilities"], axis=1),
        ]
        outputs.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2]))
    graph = helper.make_graph(
        nodes,
        "brightness",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", height, width, 3])],
        outputs,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_package(
    root: Path,
    *,
    name: str = "tiny",
    version: str = "1",
    width: int = 64,
    height: int = 48,
    resize: str = "stretch",
    threshold: float = 0.5,
    classifier: bool = False,
    graph: onnx.ModelProto | None = None,
    card_overrides: dict[str, Any] | None = None,
) -> Path:
    """Write models-style package `root/name/version/` and return its folder."""
    pkg = root / name / version
    pkg.mkdir(parents=True, exist_ok=True)
    onnx.save(graph or brightness_graph(height, width, classifier=classifier), pkg / "model.onnx")
    fields: dict[str, Any] = {
        "name": name,
        "version": version,
        "kind": "classifier" if classifier else "anomaly",
        "input": InputSpec(width=width, height=height, resize=resize),  # type: ignore[arg-type]
        "threshold": ThresholdSpec(value=threshold, method="manual"),
        "heatmap": HeatmapSpec(vmin=0.0, vmax=1.0),
        "onnx_sha256": sha256_file(pkg / "model.onnx"),
    }
    fields.update(card_overrides or {})
    write_card(ModelCard(**fields), pkg / "card.json")
    (pkg / "report").mkdir(exist_ok=True)
    return pkg


def part_image(
    width: int = 128, height: int = 96, *, defect: bool = False, seed: int = 0, channels: int = 3
) -> np.ndarray:
    """A dark textured 'part' (uint8); a defect is a bright blob at a known place."""
    rng = np.random.default_rng(seed)
    img = rng.integers(20, 60, size=(height, width, channels), dtype=np.uint8)
    if defect:
        cy, cx = height // 3, (2 * width) // 3
        r = max(3, min(width, height) // 8)
        yy, xx = np.ogrid[:height, :width]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 250
    return img if channels > 1 else img[:, :, 0]
