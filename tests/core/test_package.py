"""Model package loading: card schema, checksum, I/O contract. Every failure names the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from inspector.core.card import read_card
from inspector.core.errors import ModelPackageError
from inspector.core.package import load_model, open_package
from tests.model_factory import OPSET, brightness_graph, make_package


def test_valid_package_loads_and_runs(tiny_package: Path) -> None:
    package, model = load_model(tiny_package)
    assert package.card.ref == "tiny:1"
    out = model.run(np.zeros((3, 48, 64, 3), np.uint8))
    assert out["score"].shape == (3,)
    assert out["anomaly_map"].shape == (3, 12, 16)


def test_classifier_package_has_probabilities(classifier_package: Path) -> None:
    _, model = load_model(classifier_package)
    out = model.run(np.full((2, 48, 64, 3), 255, np.uint8))
    assert out["probabilities"].shape == (2, 2)
    np.testing.assert_allclose(out["probabilities"][:, 1], 1.0, atol=1e-6)


def _edit_card(pkg: Path, **changes: object) -> None:
    card = json.loads((pkg / "card.json").read_text())
    card.update(changes)
    (pkg / "card.json").write_text(json.dumps(card))


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelPackageError, match="not a folder"):
        open_package(tmp_path / "nope")


def test_missing_model_is_named(tiny_package: Path) -> None:
    (tiny_package / "model.onnx").unlink()
    with pytest.raises(ModelPackageError, match=r"model\.onnx is missing"):
        open_package(tiny_package)


def test_missing_card_is_named(tiny_package: Path) -> None:
    (tiny_package / "card.json").unlink()
    with pytest.raises(ModelPackageError, match=r"card\.json is missing"):
        open_package(tiny_package)


def test_card_that_is_not_json(tiny_package: Path) -> None:
    (tiny_package / "card.json").write_text("{not json")
    with pytest.raises(ModelPackageError, match="not valid JSON") as err:
        open_package(tiny_package)
    assert str(tiny_package / "card.json") in str(err.value)


def test_unknown_schema_version(tiny_package: Path) -> None:
    _edit_card(tiny_package, schema_version=99)
    with pytest.raises(ModelPackageError, match="unsupported schema_version 99"):
        open_package(tiny_package)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "../etc"}, "name"),
        ({"kind": "regressor"}, "kind"),
        ({"threshold": {"value": "high"}}, "threshold.value"),
        ({"input": {"width": 0, "height": 48}}, "input.width"),
        ({"heatmap": {"vmin": 1.0, "vmax": 0.5}}, "heatmap.vmax"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_card_fields_are_named(tiny_package: Path, changes: dict, field: str) -> None:
    _edit_card(tiny_package, **changes)
    with pytest.raises(ModelPackageError, match="invalid card") as err:
        open_package(tiny_package)
    assert field in str(err.value)


def test_checksum_mismatch_is_refused(tiny_package: Path) -> None:
    with (tiny_package / "model.onnx").open("ab") as fh:
        fh.write(b"\x00")
    with pytest.raises(ModelPackageError, match="does not match") as err:
        open_package(tiny_package)
    assert "model.onnx" in str(err.value)


def test_graph_that_onnxruntime_cannot_load(models_root: Path) -> None:
    pkg = make_package(models_root)
    (pkg / "model.onnx").write_bytes(b"garbage")
    _edit_card(pkg, onnx_sha256=__import__("hashlib").sha256(b"garbage").hexdigest())
    with pytest.raises(ModelPackageError, match="cannot load"):
        load_model(pkg)


def test_input_size_must_match_card(models_root: Path) -> None:
    pkg = make_package(models_root, graph=brightness_graph(32, 32))  # card says 64x48
    with pytest.raises(ModelPackageError, match=r"axis H is 32 but card\.json says 48"):
        load_model(pkg)


def test_missing_output_is_named(models_root: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["score"], to=TensorProto.FLOAT)],
        "bad",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 48, 64, 3])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 48, 64, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    pkg = make_package(models_root, graph=model)
    with pytest.raises(ModelPackageError, match="score' must have rank 1"):
        load_model(pkg)


def test_wrong_input_type_is_named(models_root: Path) -> None:
    graph = brightness_graph(48, 64)
    graph.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT
    graph.graph.node[0].op_type = "Identity"
    del graph.graph.node[0].attribute[:]
    onnx.checker.check_model(graph)
    pkg = make_package(models_root, graph=graph)
    with pytest.raises(ModelPackageError, match="must be uint8"):
        load_model(pkg)


def test_classifier_label_count_must_match(models_root: Path) -> None:
    pkg = make_package(
        models_root, classifier=True, card_overrides={"labels": ["good", "scratch", "dent"]}
    )
    with pytest.raises(ModelPackageError, match=r"2 classes but card\.json lists 3"):
        load_model(pkg)


def test_card_round_trips(tiny_package: Path) -> None:
    card = read_card(tiny_package / "card.json")
    assert card.input.width == 64 and card.threshold.value == 0.5
