"""`inspector export triton`: the repository layout, and config.pbtxt parsed with protobuf's
text format against Triton's own ModelConfig message (the compiled model_config.proto that the
tritonclient wheel ships, loaded from its file so that grpc need not be installed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from inspector.cli.app import app
from inspector.export.errors import ExportError
from inspector.export.triton import TritonConfig, export_triton
from tests.model_factory import make_package


def model_config_pb2() -> ModuleType:
    """tritonclient/grpc/model_config_pb2.py, without importing tritonclient.grpc (grpcio)."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tritonclient is not installed (dev extra)")
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    mod_spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pb2() -> ModuleType:
    return model_config_pb2()


def parse(pb2: ModuleType, folder: Path) -> Any:
    """config.pbtxt as Triton's ModelConfig message."""
    from google.protobuf import text_format

    return text_format.Parse((folder / "config.pbtxt").read_text(), pb2.ModelConfig())


def test_anomaly_package_becomes_a_batched_gpu_model(tmp_path: Path, pb2: ModuleType) -> None:
    pkg = make_package(tmp_path / "models", name="tiles", version="3", width=64, height=48)
    folder = export_triton(pkg, tmp_path / "repo", TritonConfig(max_batch=32))
    assert folder == tmp_path / "repo" / "tiles"
    assert (folder / "3" / "model.onnx").read_bytes() == (pkg / "model.onnx").read_bytes()
    assert json.loads((folder / "card.json").read_text())["name"] == "tiles"
    cfg = parse(pb2, folder)
    assert cfg.name == "tiles" and cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == 32
    (image,) = cfg.input
    assert image.name == "image" and image.data_type == pb2.TYPE_UINT8
    assert list(image.dims) == [48, 64, 3]
    outputs = {o.name: o for o in cfg.output}
    assert set(outputs) == {"score", "anomaly_map"}
    assert list(outputs["score"].dims) == [1] and outputs["score"].HasField("reshape")
    assert list(outputs["score"].reshape.shape) == []
    assert list(outputs["anomaly_map"].dims) == [12, 16]  # the graph pools 4x4
    assert all(o.data_type == pb2.TYPE_FP32 for o in cfg.output)
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8, 16, 32]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
    (group,) = cfg.instance_group
    assert group.kind == pb2.ModelInstanceGroup.KIND_GPU and group.count == 1
    assert not cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert cfg.parameters["inspector_model"].string_value == "tiles:3"
    assert cfg.parameters["inspector_threshold"].string_value == "0.5"
    assert cfg.parameters["inspector_card"].string_value == "card.json"


def test_classifier_on_cpu_instances_and_tensorrt_fp16(tmp_path: Path, pb2: ModuleType) -> None:
    pkg = make_package(tmp_path / "models", name="cls", version="v2", classifier=True)
    cpu = export_triton(pkg, tmp_path / "cpu", TritonConfig(max_batch=4, instance="cpu",
                                                            instances=2))
    cfg = parse(pb2, cpu)
    assert (cpu / "1" / "model.onnx").is_file()  # "v2" is no number: Triton version 1
    assert list({o.name: o for o in cfg.output}["probabilities"].dims) == [2]
    assert cfg.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_CPU
    assert cfg.instance_group[0].count == 2
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4]
    gpu = export_triton(pkg, tmp_path / "gpu", TritonConfig(tensorrt_fp16=True), version=7)
    cfg = parse(pb2, gpu)
    assert (gpu / "7" / "model.onnx").is_file()
    (trt,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"


def test_an_existing_version_is_never_overwritten(tmp_path: Path) -> None:
    pkg = make_package(tmp_path / "models")
    export_triton(pkg, tmp_path / "repo")
    with pytest.raises(ExportError, match="already in the repository"):
        export_triton(pkg, tmp_path / "repo")


def test_cli_writes_the_repository_and_refuses_bad_input(tmp_path: Path, pb2: ModuleType) -> None:
    pkg = make_package(tmp_path / "models")
    repo = tmp_path / "repo"
    r = CliRunner().invoke(app, ["export", "triton", str(pkg), "--out", str(repo),
                                 "--max-batch", "16", "--tensorrt-fp16"])
    assert r.exit_code == 0, r.output
    assert "config.pbtxt" in r.stdout
    assert parse(pb2, repo / "tiny").max_batch_size == 16
    bad = CliRunner().invoke(app, ["export", "triton", str(pkg), "--out", str(repo),
                                   "--max-batch", "0"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --max-batch 0")
    missing = CliRunner().invoke(app, ["export", "triton", str(tmp_path / "nope"),
                                       "--out", str(repo)])
    assert missing.exit_code == 2 and "not a folder" in missing.stderr
