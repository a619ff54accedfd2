"""Throughput and latency: a model package in-process, and a running server over HTTP.

In-process: decode + resize + ONNX Runtime, one thread, at batch 1 and batch 8 (and 32 on a
GPU): what the model can do on this machine, with the time per image split into decoding,
inference and host<->device copies, and the provider that ran it. Server: N concurrent clients
posting real image files, each waiting for its answer before posting the next (what a line of
cameras sees).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import cv2
import numpy as np

from inspector.core.datasets import walk_images
from inspector.core.images import probe

_CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "BMP": "image/bmp",
                  "TIFF": "image/tiff", "MPO": "image/jpeg"}


@dataclass
class Result:
    """One benchmark run."""

    name: str
    images: int
    seconds: float
    images_per_s: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    error_statuses: dict[str, int] = field(default_factory=dict)
    #: status -> the first answer's message for it (the server's error message and hint, or
    #: the connection error), so a failed run says why.
    error_messages: dict[str, str] = field(default_factory=dict)
    #: In-process runs: the provider that ran the model (tensorrt, cuda, cpu) and why.
    provider: str | None = None
    provider_reason: str | None = None
    #: Milliseconds per image: decode + resize, inference (compute), host<->device copies
    #: (0 on the CPU, where the session reads the host batch directly).
    decode_ms: float | None = None
    infer_ms: float | None = None
    copy_ms: float | None = None
    #: GPU memory this process held at the end of the run (nvidia-smi), in MiB.
    gpu_memory_mib: float | None = None
    #: Server runs: answers that arrived after the measuring time ended (not counted).
    late: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def failures(self) -> str:
        """`401 x200 (unknown or revoked API key), ...`, most frequent first."""
        return ", ".join(
            f"{status} x{n}" + (f" ({self.error_messages[status]})"
                                if self.error_messages.get(status) else "")
            for status, n in sorted(self.error_statuses.items(), key=lambda kv: -kv[1]))


#: What to do about a server run whose requests all failed with this status.
FAILURE_HINTS = {
    "401": "pass a camera key with --key or INSPECTOR_KEY (inspector keys create --role camera)",
    "403": "use a camera key allowed to post for this station",
    "404": "pass --station with a station the server serves",
    "413": "the images are larger than the server accepts: use smaller ones",
    "415": "pass image files the server can decode",
    "503": "the server is not ready or is overloaded: check /readyz, or use fewer --clients",
    "ConnectionRefusedError": "is the server running at that URL?",
}


def failure_hint(result: Result) -> str:
    top = max(result.error_statuses.items(), key=lambda kv: kv[1], default=("", 0))[0]
    return FAILURE_HINTS.get(top, "see the server's log")


def error_message(body: bytes) -> str:
    """The message (and hint) of the server's error body, or "" when it has none."""
    import json

    try:
        err = json.loads(body)["error"]
        return str(err["message"]) + (f"; {err['hint']}" if err.get("hint") else "")
    except (ValueError, KeyError, TypeError):
        return ""


def server_station(url: str, key: str | None) -> str | None:
    """The first station the server maps a model to, when the key may read `/v1/models`
    (reviewer, admin, or auth off); None otherwise."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        r = httpx.get(f"{url.rstrip('/')}/v1/models", headers=headers, timeout=10)
        stations = r.json().get("stations") if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return min(stations) if isinstance(stations, dict) and stations else None


def load_images(paths: list[Path], limit: int = 200) -> list[bytes]:
    """Image files (folders expanded recursively, through symlinked folders), at most
    `limit`."""
    files = [f for f in walk_images(paths) if f.is_file()]
    return [f.read_bytes() for f in files[:limit]]


def synthetic_jpegs(n: int = 32, width: int = 640, height: int = 480) -> list[bytes]:
    """Textured grey frames, a few with a bright blob, as camera-like JPEGs."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        noise = rng.integers(40, 90, size=(height, width, 3), dtype=np.uint8)
        img = np.ascontiguousarray(cv2.GaussianBlur(noise, (5, 5), 0))
        if i % 4 == 0:
            cv2.circle(img, (width // 2, height // 3), min(width, height) // 10, (240,) * 3, -1)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if ok:
            out.append(bytes(buf.tobytes()))
    return out


def percentiles(samples_ms: list[float]) -> tuple[float, float, float]:
    """p50, p95, p99 (nearest-rank style via statistics.quantiles)."""
    if len(samples_ms) < 2:
        v = samples_ms[0] if samples_ms else float("nan")
        return v, v, v
    q = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return q[49], q[94], q[98]


def bench_in_process(
    model_dir: Path, blobs: list[bytes], batch: int, seconds: float,
    providers: str = "auto", progress: Callable[[str], None] | None = None,
    workers: int = 1, intra_op_threads: int = 0, max_batch: int = 8,
    engine_cache_dir: Path | None = None,
) -> Result:
    """Decode + infer at a fixed batch size for about `seconds`, in `workers` threads that
    share one session (each thread: decode its frames, run them, repeat). Keep `max_batch`
    and `engine_cache_dir` the same across runs: on TensorRT they make the engine, built once
    and then read from the cache."""
    from inspector.core.pipeline import Detector
    from inspector.core.providers import gpu_memory_mib
    from inspector.core.runtime import RuntimeOptions

    # One loop: ONNX Runtime's defaults (all cores, spinning threads). Several loops: no
    # spinning, as in the server, or idle spinners would take the other loops' cores.
    options = RuntimeOptions(providers=providers,  # type: ignore[arg-type]
                             max_batch=max(batch, max_batch), intra_op_threads=intra_op_threads,
                             allow_spinning=workers == 1, engine_cache_dir=engine_cache_dir)
    detector = Detector.load(model_dir, options)
    for i in range(3):  # warm up every batch shape once
        detector.infer([detector.prepare_bytes(blobs[(i + k) % len(blobs)]) for k in range(batch)])
    latencies: list[list[float]] = [[] for _ in range(workers)]
    decode_ms = [0.0] * workers
    detector.model.stats.reset()
    start = time.perf_counter()

    def loop(w: int) -> None:
        i = w * batch
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            frames = [detector.prepare_bytes(blobs[(i + k) % len(blobs)]) for k in range(batch)]
            decode_ms[w] += (time.perf_counter() - t0) * 1000
            detector.infer(frames)
            latencies[w].append((time.perf_counter() - t0) * 1000)
            i += batch * workers

    if workers == 1:
        loop(0)
    else:
        threads = [threading.Thread(target=loop, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elapsed = time.perf_counter() - start
    done = sum(len(x) for x in latencies) * batch
    p50, p95, p99 = percentiles([ms for x in latencies for ms in x])
    model = detector.model
    name = f"in-process batch {batch}"
    if workers > 1:
        name += f", {workers} threads x {intra_op_threads or 'auto'} ORT threads"
    if progress:
        progress(f"{name}: {done / elapsed:.1f} images/s on {model.kind}")
    per = max(model.stats.images, 1)
    return Result(name, done, elapsed, done / elapsed, p50, p95, p99,
                  provider=model.kind, provider_reason=model.provider_reason,
                  decode_ms=sum(decode_ms) / max(done, 1),
                  infer_ms=model.stats.compute_ms / per,
                  copy_ms=(model.stats.copy_in_ms + model.stats.copy_out_ms) / per,
                  gpu_memory_mib=gpu_memory_mib() if model.kind != "cpu" else None)


class _Connection:
    """One keep-alive HTTP/1.1 connection that posts frames and reads the answers.

    The load generator runs on the machine it measures, so it must cost little: httpx spent
    about 2.5 ms of CPU per request here, this about 0.3 ms. Plain http:// only.
    """

    def __init__(self, host: str, port: int, head: bytes) -> None:
        self.host, self.port, self.head = host, port, head
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, target: str, ctype: str, body: bytes) -> tuple[int, bytes]:
        """Send one request; returns the status and the answer's body."""
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        request = (f"POST {target} HTTP/1.1\r\nContent-Type: {ctype}\r\n"
                   f"Content-Length: {len(body)}\r\n").encode() + self.head
        self.writer.write(request)
        self.writer.write(body)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            await self.close()
            raise ConnectionError("the server closed the connection") from exc
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        answer = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                answer += (await self.reader.readexactly(size + 2))[:size]
                if size == 0:
                    break
        else:
            answer = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, answer

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def _bench_server(
    url: str, blobs: list[bytes], clients: int, seconds: float, station: str, key: str | None,
    warmup_s: float,
) -> Result:
    parsed = urlsplit(url.rstrip("/"))
    if parsed.scheme != "http" or not parsed.hostname:
        raise ValueError(f"bench needs a plain http://HOST:PORT server URL, not {url!r}")
    head = f"Host: {parsed.netloc}\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    types = [_CONTENT_TYPES.get(probe(b).format, "application/octet-stream") for b in blobs]
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    messages: dict[str, str] = {}
    late = 0
    path = f"{parsed.path}/v1/inspect?station={quote(station)}&part_id=bench-"
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + warmup_s
    stop_at = measure_from + seconds

    async def worker(w: int) -> None:
        nonlocal late
        conn = _Connection(parsed.hostname or "", parsed.port or 80, (head + "\r\n").encode())
        i = w
        try:
            while loop.time() < stop_at:
                n = i % len(blobs)
                t0 = time.perf_counter()
                try:
                    code, answer = await asyncio.wait_for(
                        conn.post(f"{path}{i}", types[n], blobs[n]), timeout=60.0)
                    status = str(code)
                    if code != 200 and status not in messages:
                        messages[status] = error_message(answer)
                except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
                    status = type(exc).__name__
                    messages.setdefault(status, getattr(exc, "strerror", None) or str(exc))
                    await conn.close()
                    await asyncio.sleep(0.05)  # no busy loop against a server that is down
                ms = (time.perf_counter() - t0) * 1000
                if measure_from <= loop.time() < stop_at:
                    statuses[status] += 1
                    if status == "200":
                        latencies.append(ms)
                elif loop.time() >= stop_at:
                    late += 1
                i += clients
        finally:
            await conn.close()

    await asyncio.gather(*(worker(w) for w in range(clients)))
    ok = statuses.get("200", 0)
    errors = {k: v for k, v in statuses.items() if k != "200"}
    p50, p95, p99 = percentiles(latencies) if latencies else (float("nan"),) * 3
    return Result(f"server, {clients} clients", ok, seconds, ok / seconds, p50, p95, p99,
                  sum(errors.values()), errors, {k: messages.get(k, "") for k in errors},
                  late=late)


def bench_server(
    url: str, blobs: list[bytes], clients: int = 8, seconds: float = 20.0,
    station: str = "bench", key: str | None = None, warmup_s: float = 2.0,
) -> Result:
    """N clients posting frames to a running server for `seconds` (after a warm-up)."""
    return asyncio.run(_bench_server(url, blobs, clients, seconds, station, key, warmup_s))
