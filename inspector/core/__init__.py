"""Framework-free core of the inspector: model packages, image decoding, ONNX Runtime, verdicts.

Imports neither torch nor fastapi, so training code and the server can both depend on it.
"""

from inspector.core.card import InputSpec, ModelCard, ThresholdSpec, read_card, write_card
from inspector.core.errors import (
    DatasetError,
    ImageDecodeError,
    ImageTooLargeError,
    InspectorError,
    ModelPackageError,
)
from inspector.core.images import decode, encode
from inspector.core.package import ModelPackage, load_model, open_package
from inspector.core.pipeline import Detector, Judgement, PreparedFrame, verdict_for
from inspector.core.runtime import RuntimeOptions

__all__ = [
    "DatasetError",
    "Detector",
    "ImageDecodeError",
    "ImageTooLargeError",
    "InputSpec",
    "InspectorError",
    "Judgement",
    "ModelCard",
    "ModelPackage",
    "ModelPackageError",
    "PreparedFrame",
    "RuntimeOptions",
    "ThresholdSpec",
    "decode",
    "encode",
    "load_model",
    "open_package",
    "read_card",
    "verdict_for",
    "write_card",
]
