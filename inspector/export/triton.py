"""A model package as a Triton Inference Server model repository (ONNX Runtime backend).

    REPO/<name>/config.pbtxt      platform onnxruntime_onnx, batching, instances, accelerator
    REPO/<name>/card.json         the package's card: threshold, preprocessing, labels
    REPO/<name>/<version>/model.onnx

The graph is the package's own (uint8 `image` [N, H, W, 3] in, float32 outputs), so a Triton
client preprocesses exactly as the edge server does (`inspector.core.preprocess`) and judges
with the card's threshold, which stays outside the graph. `score` is [N] in the graph: with
batching, Triton names its per-frame shape [1] and reshapes it to a scalar.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from inspector.core.card import ModelCard
from inspector.core.names import NAME_RE
from inspector.core.package import CARD_FILE, MODEL_FILE
from inspector.core.pipeline import Detector
from inspector.core.runtime import RuntimeOptions
from inspector.export.errors import ExportError

Instance = Literal["gpu", "cpu"]


@dataclass(frozen=True)
class TritonConfig:
    """What config.pbtxt says, apart from the model's own shapes."""

    max_batch: int = 32
    #: Triton waits up to this long to fill a preferred batch size.
    max_queue_delay_us: int = 2000
    instance: Instance = "gpu"
    instances: int = 1
    #: Run the graph through TensorRT inside Triton's ONNX Runtime backend, in fp16.
    tensorrt_fp16: bool = False

    @property
    def preferred_batches(self) -> list[int]:
        """Powers of two from 8 up to max_batch, and max_batch itself."""
        sizes = [b for b in (8, 16, 32, 64, 128) if b < self.max_batch]
        return [*sizes, self.max_batch]


def _q(text: str) -> str:
    """A protobuf text-format string literal."""
    if any(ord(c) < 32 for c in text):
        raise ExportError(f"{text!r}: control characters cannot go into config.pbtxt")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tensor(name: str, dtype: str, dims: list[int], scalar: bool = False) -> str:
    reshape = " reshape: { shape: [ ] }" if scalar else ""
    return (f"  {{ name: {_q(name)} data_type: {dtype} "
            f"dims: [ {', '.join(str(d) for d in dims)} ]{reshape} }}")


def _optimization(cfg: TritonConfig) -> list[str]:
    if not cfg.tensorrt_fp16 or cfg.instance != "gpu":
        return []
    return [
        "optimization { execution_accelerators {",
        "  gpu_execution_accelerator: [ {",
        '    name: "tensorrt"',
        '    parameters { key: "precision_mode" value: "FP16" }',
        '    parameters { key: "max_workspace_size_bytes" value: "2147483648" }',
        '    parameters { key: "trt_engine_cache_enable" value: "1" }',
        "  } ]",
        "} }",
    ]


def config_text(name: str, card: ModelCard, map_hw: tuple[int, int], cfg: TritonConfig) -> str:
    """config.pbtxt for a package whose anomaly map is `map_hw` per frame."""
    h, w = card.input.height, card.input.width
    outputs = [_tensor("score", "TYPE_FP32", [1], scalar=True),
               _tensor("anomaly_map", "TYPE_FP32", list(map_hw))]
    if card.kind == "classifier":
        outputs.append(_tensor("probabilities", "TYPE_FP32", [len(card.labels)]))
    kind = "KIND_GPU" if cfg.instance == "gpu" else "KIND_CPU"
    lines = [
        f"name: {_q(name)}",
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {cfg.max_batch}",
        "input [",
        _tensor("image", "TYPE_UINT8", [h, w, 3]),
        "]",
        "output [",
        ",\n".join(outputs),
        "]",
        "dynamic_batching {",
        f"  preferred_batch_size: [ {', '.join(str(b) for b in cfg.preferred_batches)} ]",
        f"  max_queue_delay_microseconds: {cfg.max_queue_delay_us}",
        "}",
        f"instance_group [ {{ count: {cfg.instances} kind: {kind} }} ]",
        *_optimization(cfg),
        f'parameters {{ key: "inspector_card" value: {{ string_value: {_q(CARD_FILE)} }} }}',
        f'parameters {{ key: "inspector_model" value: {{ string_value: {_q(card.ref)} }} }}',
        'parameters { key: "inspector_threshold" '
        f"value: {{ string_value: {_q(repr(card.threshold.value))} }} }}",
    ]
    return "\n".join(lines) + "\n"


def triton_version(card: ModelCard, version: int | None) -> int:
    """Triton's numeric version folder: the given one, else the card's version when it is a
    number, else 1."""
    if version is not None:
        if version < 1:
            raise ExportError(f"--version {version}: Triton versions are whole numbers >= 1")
        return version
    return int(card.version) if card.version.isdigit() and int(card.version) > 0 else 1


def export_triton(model_dir: Path, repo: Path, cfg: TritonConfig | None = None, *,
                  name: str | None = None, version: int | None = None) -> Path:
    """Write the package into the repository; returns the model's folder. The package is
    verified and run once on the CPU first (that run gives the anomaly map's size)."""
    cfg = cfg or TritonConfig()
    if not 1 <= cfg.max_batch <= 1024:
        raise ExportError(f"--max-batch {cfg.max_batch}: use 1 to 1024")
    detector = Detector.load(model_dir, RuntimeOptions(providers="cpu", max_batch=1))
    card = detector.card
    name = name or card.name
    if not NAME_RE.match(name):
        raise ExportError(f"model name {name!r} is not a valid name",
                          hint="letters, digits, '.', '_' and '-', up to 64 characters")
    out = detector.model.run(np.zeros((1, card.input.height, card.input.width, 3), np.uint8))
    map_hw = (int(out["anomaly_map"].shape[1]), int(out["anomaly_map"].shape[2]))
    folder = repo / name
    v = triton_version(card, version)
    target = folder / str(v)
    if target.exists():
        raise ExportError(f"{target}: version {v} is already in the repository",
                          hint="pass --version with a new number")
    target.mkdir(parents=True)
    shutil.copyfile(detector.package.onnx_path, target / MODEL_FILE)
    shutil.copyfile(detector.package.card_path, folder / CARD_FILE)
    (folder / "config.pbtxt").write_text(config_text(name, card, map_hw, cfg), encoding="utf-8")
    return folder
