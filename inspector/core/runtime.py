"""ONNX Runtime session wrapper: provider plan, threads, warm-up, batches of any size.

Which provider serves a model, and why, is decided in `inspector.core.providers` (never asking
ONNX Runtime for a GPU provider this machine cannot start). On the CUDA and TensorRT providers
batches go through I/O binding (`inspector.core.binding`); on the CPU through a plain
`session.run`, which is fastest there.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inspector.core.binding import BoundRunner, RunTimes
from inspector.core.providers import (
    EngineProfile,
    ProviderChoice,
    ProviderKind,
    ProviderPlan,
    plan_providers,
)
from inspector.core.providers import cuda_device_count as cuda_device_count

log = logging.getLogger(__name__)

#: Folder under the data folder that holds TensorRT engine caches.
ENGINE_CACHE_DIR = "tensorrt-engines"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers narrow)."""
    return len(_affinity()) or os.cpu_count() or 1


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set()


def _widen_affinity(cores: frozenset[int]) -> None:
    """Let the calling thread run on every core in `cores` (a thread starts with the mask of
    the thread that started it)."""
    if cores:
        try:
            os.sched_setaffinity(0, cores)
        except OSError as exc:
            log.debug("could not widen a chunk thread's affinity: %s", exc)


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
    """Whether `choice` will put models on a GPU on this machine."""
    return plan_providers(choice).kind != "cpu"


@dataclass(frozen=True)
class ThreadPlan:
    """How many inference calls run at once per model, threads per call, largest batch."""

    workers: int
    intra_op_threads: int
    max_batch: int = 8


#: Largest batch by device when the settings leave it to the plan (max_batch 0).
CPU_MAX_BATCH = 8
GPU_MAX_BATCH = 32


def plan_threads(
    cores: int | None = None, gpu: bool = False, workers: int = 0, intra_op_threads: int = 0,
    max_batch: int = 0,
) -> ThreadPlan:
    """Split the cores between concurrent inference calls, and size batches (0 = decide).

    On a CPU, several single-threaded calls in parallel beat one call spread over every core:
    the threads of one call wait for each other at every operator. On 2 cores, with the MTD
    PatchCore package, 2 calls x 1 thread give 80-83 frames/s where 1 call x 2 threads gives
    67-72 (`scripts/bench_server.md`). Rule: up to 4 calls, the cores shared evenly between
    them, batches of up to 8. On a GPU the device does the work and wants big batches: up to
    32 frames a batch and 3 batches in flight, so one batch's host copies and decoding overlap
    another's kernels while a third waits, ready (figures: `scripts/gpu_bench.py`).
    """
    cores = max(1, cores or available_cores())
    if workers <= 0:
        workers = 3 if gpu else min(4, cores)
    if intra_op_threads <= 0:
        intra_op_threads = 0 if gpu else max(1, cores // workers)
    if max_batch <= 0:
        max_batch = GPU_MAX_BATCH if gpu else CPU_MAX_BATCH
    return ThreadPlan(workers, intra_op_threads, max_batch)


@dataclass(frozen=True)
class RuntimeOptions:
    providers: ProviderChoice = "auto"
    device_id: int = 0
    #: Threads for one operator; 0 lets ONNX Runtime use every core.
    intra_op_threads: int = 0
    inter_op_threads: int = 1
    #: Largest batch sent to the session in one call; bigger inputs are split. On TensorRT
    #: also the largest batch the engine is built for.
    max_batch: int = 32
    warmup_runs: int = 1
    #: Let idle ORT worker threads spin. Fastest for a lone process; in a server the spinning
    #: threads starve decoding, HTTP and the database (about 30 % fewer frames/s on 2 cores).
    allow_spinning: bool = True
    #: Where TensorRT engines are kept between starts (the server: <data_dir>/tensorrt-engines);
    #: None builds them afresh at every load.
    engine_cache_dir: Path | None = None
    #: Let TensorRT run layers in fp16 (its own choice per layer, fp32 graph unchanged).
    trt_fp16: bool = True
    #: Batches through I/O binding; None: on the CUDA and TensorRT providers only.
    io_binding: bool | None = None
    #: How many chunks of one frame's tiles (`OnnxModel.run_chunks`) run at once. 0: on the
    #: CPU, the cores this process may use over `intra_op_threads` (2 on 2 cores with the
    #: server's 1 thread per call), 1 when `intra_op_threads` is 0 (each call already spreads
    #: over every core) and on a GPU.
    chunk_lanes: int = 0


@dataclass
class RunStats:
    """Where inference time went since the last reset, summed over runs (for `bench`)."""

    runs: int = 0
    images: int = 0
    copy_in_ms: float = 0.0
    compute_ms: float = 0.0
    copy_out_ms: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, n: int, times: RunTimes) -> None:
        with self._lock:
            self.runs += 1
            self.images += n
            self.copy_in_ms += times.copy_in_ms
            self.compute_ms += times.compute_ms
            self.copy_out_ms += times.copy_out_ms

    def reset(self) -> None:
        with self._lock:
            self.runs = self.images = 0
            self.copy_in_ms = self.compute_ms = self.copy_out_ms = 0.0


@dataclass
class OnnxModel:
    """A loaded ONNX Runtime session with the inspector I/O contract."""

    path: Path
    session: ort.InferenceSession
    options: RuntimeOptions
    input_name: str = "image"
    output_names: list[str] = field(default_factory=list)
    #: Which provider serves the model (tensorrt, cuda, cpu) and why, in words.
    kind: ProviderKind = "cpu"
    provider_reason: str = ""
    #: Set when batches go through I/O binding (on a GPU provider, or when asked for).
    runner: BoundRunner | None = None
    stats: RunStats = field(default_factory=RunStats)
    _lanes_pool: ThreadPoolExecutor | None = field(default=None, repr=False, compare=False)
    _lanes_lock: threading.Lock = field(default_factory=threading.Lock, repr=False,
                                        compare=False)
    #: The cores this process could use when the model was loaded: threads that run chunks
    #: get all of them back (a pinned server worker that starts one would pass its one core on).
    _cores: frozenset[int] = field(default_factory=lambda: frozenset(_affinity()), repr=False,
                                   compare=False)

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

    @property
    def chunk_lanes(self) -> int:
        """How many chunks `run_chunks` runs at once (`RuntimeOptions.chunk_lanes`)."""
        opts = self.options
        if opts.chunk_lanes > 0:
            return opts.chunk_lanes
        if self.kind != "cpu" or self.runner is not None or opts.intra_op_threads <= 0:
            return 1
        cores = len(self._cores) or os.cpu_count() or 1
        return max(1, cores // opts.intra_op_threads)

    def run_chunks(self, chunks: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """Run batches (each at most max_batch) and yield their outputs in order, up to
        `chunk_lanes` of them at once: one large frame's tiles then keep every core busy even
        where each call has one thread (the server's CPU plan), and at most that many chunks'
        outputs are held at a time."""
        lanes = self.chunk_lanes
        if lanes <= 1:
            for batch in chunks:
                yield self.run(batch)
            return
        pool = self._pool(lanes)
        pending: deque[Future[dict[str, np.ndarray]]] = deque()
        try:
            for batch in chunks:
                if len(pending) >= lanes:
                    yield pending.popleft().result()
                pending.append(pool.submit(self.run, batch))
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # the caller stopped early or a chunk failed
                future.cancel()

    def close(self) -> None:
        """Stop the chunk threads (once the model is unloaded and idle)."""
        with self._lanes_lock:
            if self._lanes_pool is not None:
                self._lanes_pool.shutdown(wait=False)
                self._lanes_pool = None

    def _pool(self, lanes: int) -> ThreadPoolExecutor:
        with self._lanes_lock:
            if self._lanes_pool is None:
                self._lanes_pool = ThreadPoolExecutor(
                    max_workers=lanes, thread_name_prefix="tile-chunks",
                    initializer=_widen_affinity, initargs=(self._cores,))
            return self._lanes_pool

    def _run_once(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.runner is not None:
            named, times = self.runner.run(batch)
        else:
            t0 = time.perf_counter()
            outputs = self.session.run(self.output_names, {self.input_name: batch})
            named = dict(zip(self.output_names, (np.asarray(o) for o in outputs), strict=True))
            times = RunTimes(0.0, (time.perf_counter() - t0) * 1000, 0.0)
        self.stats.add(len(batch), times)
        return named


def plan_for(options: RuntimeOptions, model_sha256: str | None = None,
             input_hw: tuple[int, int] | None = None) -> ProviderPlan:
    """The provider plan for one model: its engine cache key and batch profile on TensorRT."""
    profile = None
    if input_hw is not None:
        profile = EngineProfile("image", input_hw[0], input_hw[1], max(1, options.max_batch))
    return plan_providers(options.providers, options.device_id, fp16=options.trt_fp16,
                          cache_root=options.engine_cache_dir, model_sha256=model_sha256,
                          profile=profile)


def open_session(
    path: Path, options: RuntimeOptions | None = None, plan: ProviderPlan | None = None,
    model_bytes: bytes | None = None,
) -> ort.InferenceSession:
    """Create an ONNX Runtime session with quiet logs and the planned providers: from
    `model_bytes` when given (the bytes the caller verified), else from `path`.

    TensorRT keys its engine files by the model's path, so there the verified bytes are first
    written into the model's engine cache folder (server-owned, keyed by the sha256) and the
    session reads that copy."""
    options = options or RuntimeOptions()
    plan = plan or plan_for(options)
    if options.providers not in ("auto", plan.kind):
        log.warning("providers=%s asked for; %s", options.providers, plan.reason)
    if plan.engine_cache is not None:
        plan.engine_cache.mkdir(parents=True, exist_ok=True)
    so = ort.SessionOptions()
    so.log_severity_level = 3  # errors only; we log the provider choice ourselves
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    spin = "1" if options.allow_spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    source: str | bytes = str(path)
    if model_bytes is not None:
        source = model_bytes
        if plan.kind == "tensorrt" and plan.engine_cache is not None:
            copy = plan.engine_cache / "model.onnx"
            tmp = copy.with_name(f".model.onnx.{os.getpid()}.tmp")
            tmp.write_bytes(model_bytes)
            tmp.replace(copy)
            source = str(copy)
    return ort.InferenceSession(source, sess_options=so, providers=plan.providers)


def load_onnx(
    path: Path,
    input_hw: tuple[int, int],
    options: RuntimeOptions | None = None,
    output_names: list[str] | None = None,
    session: ort.InferenceSession | None = None,
    plan: ProviderPlan | None = None,
) -> OnnxModel:
    """Wrap a session (opened here unless given) and warm it up at the model's input size:
    batch 1, and on a GPU also the largest batch (kernels and engines are chosen per shape,
    so the first camera frames never pay for it)."""
    options = options or RuntimeOptions()
    plan = plan or plan_for(options, input_hw=input_hw)
    session = session or open_session(path, options, plan)
    names = output_names or [o.name for o in session.get_outputs()]
    kind, reason = plan.settle(str(session.get_providers()[0]))
    model = OnnxModel(path=path, session=session, options=options, output_names=names,
                      kind=kind, provider_reason=reason)
    bind = options.io_binding if options.io_binding is not None else kind != "cpu"
    if bind:
        device = "cpu" if kind == "cpu" else "cuda"
        model.runner = BoundRunner(session, model.input_name, names, device, options.device_id)
    h, w = input_hw
    sizes = (1,) if kind == "cpu" else (1, max(1, options.max_batch))
    for _ in range(options.warmup_runs):
        for n in sizes:
            model.run(np.zeros((n, h, w, 3), dtype=np.uint8))
    model.stats.reset()
    log.info("loaded %s on %s (%s)", path, model.provider, reason)
    return model
