"""ONNX Runtime session wrapper: provider choice, threads, warm-up, batches of any size.

onnxruntime-gpu lists the CUDA and TensorRT providers as available even on a machine without a
GPU, and asking for them there logs a loud error before it falls back. So we check for a usable
CUDA device ourselves (the driver library answers cuInit and reports at least one device) and
only then ask for the GPU providers.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)

ProviderChoice = Literal["auto", "cpu", "cuda", "tensorrt"]


@functools.cache
def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports; 0 when there is no driver or no device."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return 0
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.cuInit(0) != 0:
                return 0
            count = ctypes.c_int(0)
            if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
            return int(count.value)
        except AttributeError:
            return 0
    return 0


def choose_providers(choice: ProviderChoice = "auto", device_id: int = 0) -> list[str | tuple]:
    """Execution providers to request, in priority order, for a settings value."""
    available = set(ort.get_available_providers())
    gpu = cuda_device_count() > 0 and "CUDAExecutionProvider" in available
    if choice == "cpu" or (choice == "auto" and not gpu):
        return ["CPUExecutionProvider"]
    if not gpu:
        log.warning("providers=%s asked for but no usable CUDA device found; using CPU", choice)
        return ["CPUExecutionProvider"]
    cuda = ("CUDAExecutionProvider", {"device_id": device_id})
    if choice == "tensorrt" and "TensorrtExecutionProvider" in available:
        trt = ("TensorrtExecutionProvider", {"device_id": device_id})
        return [trt, cuda, "CPUExecutionProvider"]
    return [cuda, "CPUExecutionProvider"]


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class CorePinner:
    """Pins each thread that calls it to the next core this process may use, in turn.

    For a CPU plan of one single-threaded inference call per core: each call stays on its own
    core instead of migrating between them as the decode, HTTP and database threads come and
    go (on 2 cores: about 3 % more frames/s and a lower p99 in `scripts/bench_server.py`).
    Use as a thread-pool initializer; does nothing where affinity cannot be set."""

    def __init__(self) -> None:
        self._next = itertools.count()
        try:
            self.cores = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            self.cores = []

    def __call__(self) -> None:
        if not self.cores:
            return
        core = self.cores[next(self._next) % len(self.cores)]
        try:
            os.sched_setaffinity(0, {core})  # 0: the calling thread
        except OSError as exc:
            log.debug("could not pin an inference thread to core %d: %s", core, exc)


def uses_gpu(choice: ProviderChoice = "auto") -> bool:
    """Whether `choose_providers(choice)` will put the model on a GPU (without its log line)."""
    return choice != "cpu" and cuda_device_count() > 0 and (
        "CUDAExecutionProvider" in ort.get_available_providers())


@dataclass(frozen=True)
class ThreadPlan:
    """How many inference calls run at once per model, and threads per call."""

    workers: int
    intra_op_threads: int


def plan_threads(
    cores: int | None = None, gpu: bool = False, workers: int = 0, intra_op_threads: int = 0
) -> ThreadPlan:
    """Split the cores between concurrent inference calls (0 = decide).

    On a CPU, several single-threaded calls in parallel beat one call spread over every core:
    the threads of one call wait for each other at every operator. On 2 cores, with the MTD
    PatchCore package, 2 calls x 1 thread give 80-83 frames/s where 1 call x 2 threads gives
    67-72 (`scripts/bench_server.md`). Rule: up to 4 calls, the cores shared evenly between
    them. On a GPU the device does the work; two calls overlap one's host copies with the
    other's kernels.
    """
    cores = max(1, cores or available_cores())
    if workers <= 0:
        workers = 2 if gpu else min(4, cores)
    if intra_op_threads <= 0:
        intra_op_threads = 0 if gpu else max(1, cores // workers)
    return ThreadPlan(workers, intra_op_threads)


@dataclass(frozen=True)
class RuntimeOptions:
    providers: ProviderChoice = "auto"
    device_id: int = 0
    #: Threads for one operator; 0 lets ONNX Runtime use every core.
    intra_op_threads: int = 0
    inter_op_threads: int = 1
    #: Largest batch sent to the session in one call; bigger inputs are split.
    max_batch: int = 32
    warmup_runs: int = 1
    #: Let idle ORT worker threads spin. Fastest for a lone process; in a server the spinning
    #: threads starve decoding, HTTP and the database (about 30 % fewer frames/s on 2 cores).
    allow_spinning: bool = True


@dataclass
class OnnxModel:
    """A loaded ONNX Runtime session with the inspector I/O contract."""

    path: Path
    session: ort.InferenceSession
    options: RuntimeOptions
    input_name: str = "image"
    output_names: list[str] = field(default_factory=list)

    @property
    def provider(self) -> str:
        """The provider actually in use (the first one the session kept)."""
        return str(self.session.get_providers()[0])

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run a uint8 [N, H, W, 3] batch of any N; outputs are concatenated along N."""
        if batch.ndim != 4 or batch.dtype != np.uint8:
            raise ValueError(f"expected uint8 [N, H, W, 3], got {batch.dtype} {batch.shape}")
        n = batch.shape[0]
        step = max(1, self.options.max_batch)
        if n <= step:
            return self._run_once(batch)
        parts = [self._run_once(batch[i : i + step]) for i in range(0, n, step)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _run_once(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, {self.input_name: batch})
        return dict(zip(self.output_names, (np.asarray(o) for o in outputs), strict=True))


def open_session(path: Path, options: RuntimeOptions | None = None) -> ort.InferenceSession:
    """Create an ONNX Runtime session with quiet logs and the chosen providers."""
    options = options or RuntimeOptions()
    so = ort.SessionOptions()
    so.log_severity_level = 3  # errors only; we log the provider choice ourselves
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    spin = "1" if options.allow_spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    providers = choose_providers(options.providers, options.device_id)
    return ort.InferenceSession(str(path), sess_options=so, providers=providers)


def load_onnx(
    path: Path,
    input_hw: tuple[int, int],
    options: RuntimeOptions | None = None,
    output_names: list[str] | None = None,
    session: ort.InferenceSession | None = None,
) -> OnnxModel:
    """Wrap a session (opened here unless given) and warm it up at the model's input size."""
    options = options or RuntimeOptions()
    session = session or open_session(path, options)
    names = output_names or [o.name for o in session.get_outputs()]
    model = OnnxModel(path=path, session=session, options=options, output_names=names)
    h, w = input_hw
    for _ in range(options.warmup_runs):
        model.run(np.zeros((1, h, w, 3), dtype=np.uint8))
    log.info("loaded %s on %s", path, model.provider)
    return model
