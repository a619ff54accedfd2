"""Batches through ONNX Runtime's I/O binding, for models served on a GPU.

A plain `session.run` on the CUDA or TensorRT provider allocates the input on the device,
copies it, runs, allocates host outputs and copies back, every call. Bound, each inference
thread keeps one device input buffer per batch size and refills it in place (one host-to-device
copy, no allocation), the outputs stay on the device until the run ends and come back in one
copy; the two copies are timed apart from the compute so `inspector bench` can show them.

Not done: pinned host buffers (ONNX Runtime's Python API allocates pinned memory only through
an execution-provider device's memory info) and CUDA graphs (`enable_cuda_graph` needs fixed
input addresses and one batch size per graph; see README "Edge GPU").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort


@dataclass(frozen=True)
class RunTimes:
    """One run's milliseconds: copy to the device, compute, copy back to the host."""

    copy_in_ms: float
    compute_ms: float
    copy_out_ms: float


class BoundRunner:
    """Runs uint8 batches through `session.io_binding` on `device` ("cuda" or "cpu")."""

    def __init__(self, session: ort.InferenceSession, input_name: str,
                 output_names: Sequence[str], device: str, device_id: int = 0) -> None:
        self.session = session
        self.input_name = input_name
        self.output_names = list(output_names)
        self.device = device
        self.device_id = device_id
        self._local = threading.local()

    def _input(self, batch: np.ndarray) -> ort.OrtValue:
        """This thread's device buffer for the batch's shape, refilled with the batch."""
        buffers: dict[tuple[int, ...], ort.OrtValue] = self._local.__dict__.setdefault(
            "buffers", {})
        value = buffers.get(batch.shape)
        if value is None:
            value = ort.OrtValue.ortvalue_from_shape_and_type(
                list(batch.shape), np.uint8, self.device, self.device_id)
            buffers[batch.shape] = value
        value.update_inplace(np.ascontiguousarray(batch))
        return value

    def run(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], RunTimes]:
        """The outputs by name (host arrays) and where the time went."""
        t0 = time.perf_counter()
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input_name, self._input(batch))
        for name in self.output_names:
            binding.bind_output(name, self.device, self.device_id)
        binding.synchronize_inputs()
        t1 = time.perf_counter()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        t2 = time.perf_counter()
        outputs = binding.copy_outputs_to_cpu()
        t3 = time.perf_counter()
        named = dict(zip(self.output_names, (np.asarray(o) for o in outputs), strict=True))
        return named, RunTimes((t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000)
