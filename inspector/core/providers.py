"""Which ONNX Runtime execution provider serves a model, and why: TensorRT, CUDA or CPU.

onnxruntime-gpu lists the CUDA and TensorRT providers as available even on a machine without a
GPU (or without TensorRT's libraries), and asking for them there logs a loud error before it
falls back. So we look at the machine ourselves (the CUDA driver answers cuInit and reports a
device; libnvinfer loads) and only ask for what will start. Every plan carries its reason in
words ("cpu: no CUDA device found") for the startup log, `/readyz` and `GET /v1/models`.

TensorRT engines take minutes to build, so they are built when the model loads (never on the
first camera frame) for every batch size up to `max_batch` (one optimisation profile), and kept
in an engine cache keyed by what invalidates them: the model's sha256, the GPU and the
TensorRT version (and fp16), under the data folder.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnxruntime as ort

log = logging.getLogger(__name__)

ProviderChoice = Literal["auto", "cpu", "cuda", "tensorrt"]
ProviderKind = Literal["tensorrt", "cuda", "cpu"]
#: What ONNX Runtime's `providers=` takes: a name, or a name with its options.
Provider = str | tuple[str, dict[str, str]]

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
#: ONNX Runtime provider name -> our short name.
KIND_OF: dict[str, ProviderKind] = {TRT_EP: "tensorrt", CUDA_EP: "cuda", CPU_EP: "cpu"}

_CUDA_LIBS = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")
_TRT_LIBS = ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so", "nvinfer_10.dll")


def _cuda_driver() -> ctypes.CDLL | None:
    """The CUDA driver library, initialised; None without one (or when cuInit fails)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return None
    for name in _CUDA_LIBS:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            return lib if lib.cuInit(0) == 0 else None
        except AttributeError:
            return None
    return None


@functools.cache
def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports; 0 when there is no driver or no device."""
    lib = _cuda_driver()
    count = ctypes.c_int(0)
    if lib is None or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return int(count.value)


@functools.cache
def gpu_name(device_id: int = 0) -> str | None:
    """The device's name as the driver reports it ("NVIDIA H100 80GB HBM3"); None without."""
    lib = _cuda_driver()
    if lib is None or device_id >= cuda_device_count():
        return None
    dev = ctypes.c_int(0)
    buf = ctypes.create_string_buffer(256)
    if lib.cuDeviceGet(ctypes.byref(dev), device_id) != 0:
        return None
    if lib.cuDeviceGetName(buf, len(buf), dev) != 0:
        return None
    return buf.value.decode("utf-8", "replace").strip() or None


def gpu_memory_mib(pid: int | None = None) -> float | None:
    """GPU memory held by a process (this one by default) according to nvidia-smi, in MiB;
    None without nvidia-smi or when the process holds none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-compute-apps=pid,used_memory",
                              "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    mine = str(pid or os.getpid())
    used = [float(m) for p, _, m in (ln.partition(",") for ln in out.splitlines())
            if p.strip() == mine and m.strip().replace(".", "", 1).isdigit()]
    return sum(used) if used else None


def _format_trt_version(v: int) -> str:
    """getInferLibVersion's integer: 100300 -> "10.3.0" (TensorRT 10+), 8601 -> "8.6.1"."""
    if v >= 10000:
        return f"{v // 10000}.{(v // 100) % 100}.{v % 100}"
    return f"{v // 1000}.{(v // 100) % 10}.{v % 100}"


@functools.cache
def tensorrt_version() -> str | None:
    """The TensorRT library's version when libnvinfer loads, else None (TensorRT's execution
    provider would then fail at session start, however available ONNX Runtime says it is)."""
    for name in _TRT_LIBS:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            return _format_trt_version(int(lib.getInferLibVersion()))
        except AttributeError:
            return None
    return None


@dataclass(frozen=True)
class DeviceProbe:
    """What this machine offers ONNX Runtime: tests build one by hand for a GPU they lack."""

    cuda_devices: int
    cuda_ep: bool
    trt_ep: bool
    trt_version: str | None = None
    gpu: str | None = None

    @classmethod
    def detect(cls, device_id: int = 0) -> DeviceProbe:
        """Probe this machine (the driver, libnvinfer and the onnxruntime build)."""
        available = set(ort.get_available_providers())
        devices = cuda_device_count()
        return cls(devices, CUDA_EP in available, TRT_EP in available,
                   tensorrt_version() if devices else None,
                   gpu_name(device_id) if devices else None)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "unknown"


def engine_cache_key(model_sha256: str, gpu: str, trt_version: str, fp16: bool) -> str:
    """Folder name of one model's engines: a new model, GPU, TensorRT or precision never
    reuses an engine built for another (TensorRT refuses or, worse, mis-runs those)."""
    precision = "fp16" if fp16 else "fp32"
    return f"{model_sha256[:16]}-{_slug(gpu)}-trt{_slug(trt_version)}-{precision}"


@dataclass(frozen=True)
class EngineProfile:
    """The input shapes a TensorRT engine is built for: batch 1 to `max_batch`, one H x W."""

    input_name: str
    height: int
    width: int
    max_batch: int

    def shape(self, n: int) -> str:
        return f"{self.input_name}:{n}x{self.height}x{self.width}x3"


@dataclass(frozen=True)
class ProviderPlan:
    """The providers to ask ONNX Runtime for, the one expected to serve, and why."""

    kind: ProviderKind
    reason: str
    providers: list[Provider]
    #: Where this model's TensorRT engines live (None unless kind is tensorrt with a cache).
    engine_cache: Path | None = None

    def settle(self, actual: str) -> tuple[ProviderKind, str]:
        """The provider a session really kept, with the reason: ours when the plan held, else
        one that says the planned provider did not start."""
        kind = KIND_OF.get(actual, "cpu")
        if kind == self.kind:
            return kind, self.reason
        return kind, f"{kind}: the {self.kind} provider did not start (see the log above)"

    @property
    def engine_built(self) -> bool:
        """Whether the engine cache already holds an engine (a load then takes seconds)."""
        cache = self.engine_cache
        return cache is not None and cache.is_dir() and any(cache.glob("*.engine"))


def _tensorrt(device_id: int, probe: DeviceProbe, fp16: bool, cache_root: Path | None,
              model_sha256: str | None, profile: EngineProfile | None) -> ProviderPlan:
    opts = {"device_id": str(device_id), "trt_fp16_enable": "1" if fp16 else "0",
            "trt_max_workspace_size": str(2 << 30)}
    cache = None
    if cache_root is not None and model_sha256:
        gpu, version = probe.gpu or "gpu", probe.trt_version or "unknown"
        cache = cache_root / engine_cache_key(model_sha256, gpu, version, fp16)
        timing = cache_root / f"timing-{_slug(gpu)}-trt{_slug(version)}"
        opts |= {"trt_engine_cache_enable": "1", "trt_engine_cache_path": str(cache),
                 "trt_timing_cache_enable": "1", "trt_timing_cache_path": str(timing)}
    if profile is not None:
        opts |= {"trt_profile_min_shapes": profile.shape(1),
                 "trt_profile_opt_shapes": profile.shape(profile.max_batch),
                 "trt_profile_max_shapes": profile.shape(profile.max_batch)}
    precision = "fp16" if fp16 else "fp32"
    reason = f"tensorrt: TensorRT {probe.trt_version} on {probe.gpu or 'GPU'}, {precision}"
    return ProviderPlan("tensorrt", reason,
                        [(TRT_EP, opts), (CUDA_EP, {"device_id": str(device_id)}), CPU_EP], cache)


def plan_providers(
    choice: ProviderChoice = "auto",
    device_id: int = 0,
    *,
    probe: DeviceProbe | None = None,
    fp16: bool = True,
    cache_root: Path | None = None,
    model_sha256: str | None = None,
    profile: EngineProfile | None = None,
) -> ProviderPlan:
    """The providers for a settings value: auto = TensorRT, else CUDA, else CPU, taking the
    best this machine can start; an explicit choice it cannot start falls back with a reason
    (and the caller's log line), never with ONNX Runtime's own error."""
    probe = probe or DeviceProbe.detect(device_id)
    cpu: list[Provider] = [CPU_EP]
    if choice == "cpu":
        return ProviderPlan("cpu", "cpu: providers=cpu asked for", cpu)
    if probe.cuda_devices <= 0:
        return ProviderPlan("cpu", "cpu: no CUDA device found", cpu)
    if not probe.cuda_ep:
        return ProviderPlan("cpu", "cpu: this onnxruntime has no CUDA provider "
                                   "(install onnxruntime-gpu)", cpu)
    if device_id >= probe.cuda_devices:
        return ProviderPlan("cpu", f"cpu: no CUDA device {device_id} "
                                   f"({probe.cuda_devices} found)", cpu)
    trt_ok = probe.trt_ep and probe.trt_version is not None
    if choice in ("auto", "tensorrt") and trt_ok:
        return _tensorrt(device_id, probe, fp16, cache_root, model_sha256, profile)
    if choice == "cuda":
        why = "providers=cuda asked for"
    elif not probe.trt_ep:
        why = "TensorRT provider not in this onnxruntime build"
    else:
        why = "TensorRT provider not available (libnvinfer not found)"
    return ProviderPlan("cuda", f"cuda: {why}", [(CUDA_EP, {"device_id": str(device_id)}), *cpu])
