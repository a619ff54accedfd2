"""Throughput and latency: a model package in-process, and a running server over HTTP.

In-process: decode + resize + ONNX Runtime, one thread, at batch 1 and batch 8 (what the model
can do on this machine). Server: N concurrent clients posting real image files, each waiting
for its answer before posting the next (what a line of cameras sees).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from inspector.core.images import probe

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
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

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def load_images(paths: list[Path], limit: int = 200) -> list[bytes]:
    """Image files (folders expanded recursively), at most `limit`."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
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
) -> Result:
    """Decode + infer sequentially at a fixed batch size for about `seconds`."""
    from inspector.core.pipeline import Detector
    from inspector.core.runtime import RuntimeOptions

    options = RuntimeOptions(providers=providers, max_batch=max(batch, 8))  # type: ignore[arg-type]
    detector = Detector.load(model_dir, options)
    for i in range(3):  # warm up every batch shape once
        detector.infer([detector.prepare_bytes(blobs[(i + k) % len(blobs)]) for k in range(batch)])
    done, i = 0, 0
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        frames = [detector.prepare_bytes(blobs[(i + k) % len(blobs)]) for k in range(batch)]
        detector.infer(frames)
        latencies.append((time.perf_counter() - t0) * 1000)
        i += batch
        done += batch
    elapsed = time.perf_counter() - start
    p50, p95, p99 = percentiles(latencies)
    if progress:
        progress(f"in-process batch {batch}: {done / elapsed:.1f} images/s")
    return Result(f"in-process batch {batch}", done, elapsed, done / elapsed, p50, p95, p99)


async def _bench_server(
    url: str, blobs: list[bytes], clients: int, seconds: float, station: str, key: str | None,
    warmup_s: float,
) -> Result:
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    types = [_CONTENT_TYPES.get(probe(b).format, "application/octet-stream") for b in blobs]
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    endpoint = url.rstrip("/") + "/v1/inspect"
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60.0, headers=headers) as client:
        loop = asyncio.get_running_loop()
        measure_from = loop.time() + warmup_s
        stop_at = measure_from + seconds

        async def worker(w: int) -> None:
            i = w
            while loop.time() < stop_at:
                n = i % len(blobs)
                t0 = time.perf_counter()
                try:
                    r = await client.post(endpoint, content=blobs[n],
                                          params={"station": station, "part_id": f"bench-{i}"},
                                          headers={"Content-Type": types[n]})
                    status = str(r.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                ms = (time.perf_counter() - t0) * 1000
                if loop.time() >= measure_from and loop.time() < stop_at:
                    statuses[status] += 1
                    if status == "200":
                        latencies.append(ms)
                i += clients

        await asyncio.gather(*(worker(w) for w in range(clients)))
    ok = statuses.get("200", 0)
    errors = {k: v for k, v in statuses.items() if k != "200"}
    p50, p95, p99 = percentiles(latencies) if latencies else (float("nan"),) * 3
    return Result(f"server, {clients} clients", ok, seconds, ok / seconds, p50, p95, p99,
                  sum(errors.values()), errors)


def bench_server(
    url: str, blobs: list[bytes], clients: int = 8, seconds: float = 20.0,
    station: str = "bench", key: str | None = None, warmup_s: float = 2.0,
) -> Result:
    """N clients posting frames to a running server for `seconds` (after a warm-up)."""
    return asyncio.run(_bench_server(url, blobs, clients, seconds, station, key, warmup_s))
