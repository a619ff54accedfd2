"""Machine-vision defect inspection: ONNX defect models served at the line."""

__version__ = "0.1.0"
