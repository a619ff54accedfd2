"""Hostile-frame burst: 16 concurrent 7000x7000 grey PNGs (47 KB each) on one station while a
normal small frame is posted every 0.5 s on another. Prints the normal frames' latencies, the
hostile frames' status codes and the server process's peak RSS (VmHWM).

    python scripts/bench_hostile_frames.py                      # this checkout
    python scripts/bench_hostile_frames.py --repo /tmp/old      # another tree (e.g. git archive)
    python scripts/bench_hostile_frames.py --measure-bytes-per-pixel

A measurement, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from tests.hostile_corpus import grey_png_7000  # noqa: E402
from tests.model_factory import make_package  # noqa: E402
from tests.server.conftest import good_frame  # noqa: E402
from tests.server.harness import ServerProcess, base_env  # noqa: E402


def vm(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def burst(repo: Path, hostile: int, normal: int, budget: int | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_package(root / "models")
        env = base_env(root / "data", INSPECTOR_AUTH_ENABLED="false",
                       INSPECTOR_SAMPLE_PASSES="0")
        env["PYTHONPATH"] = str(repo)
        if budget:
            env["INSPECTOR_MAX_INFLIGHT_BYTES"] = str(budget)
        srv = ServerProcess(env, root / "models", root / "server.log")
        import tests.server.harness as harness

        harness.REPO = repo  # the server runs from that tree
        with srv:
            assert srv.proc is not None
            pid = srv.proc.pid
            big = grey_png_7000()
            small = good_frame()
            url = f"{srv.url}/v1/inspect"
            httpx.post(url, params={"station": "normal"}, content=small,
                       headers={"Content-Type": "image/jpeg"})  # warm up
            base_rss = vm(pid, "VmRSS")
            statuses: Counter[int] = Counter()
            latencies: list[float] = []

            def hostile_post(_: int) -> None:
                r = httpx.post(url, params={"station": "hostile"}, content=big,
                               headers={"Content-Type": "image/png"}, timeout=600)
                statuses[r.status_code] += 1

            def normal_posts() -> None:
                for _ in range(normal):
                    time.sleep(0.5)
                    t0 = time.perf_counter()
                    r = httpx.post(url, params={"station": "normal"}, content=small,
                                   headers={"Content-Type": "image/jpeg"}, timeout=600)
                    latencies.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200, r.text

            t0 = time.perf_counter()
            side = threading.Thread(target=normal_posts)
            side.start()
            with cf.ThreadPoolExecutor(hostile) as pool:
                list(pool.map(hostile_post, range(hostile)))
            side.join()
            wall = time.perf_counter() - t0
            peak = vm(pid, "VmHWM")
        print(f"tree: {repo}")
        print(f"hostile frames: {hostile} x {len(big)} B -> {dict(statuses)} in {wall:.1f} s")
        print(f"normal frames (ms): median {statistics.median(latencies):.0f}, "
              f"max {max(latencies):.0f}, all {[round(x) for x in latencies]}")
        print(f"server RSS: {base_rss / 2**20:.0f} MiB before, peak {peak / 2**20:.0f} MiB")


def bytes_per_pixel() -> None:
    """Peak RSS growth per decoded pixel over decode + resize + overlay + encode."""
    import subprocess

    code = r"""
import resource, sys, numpy as np, cv2
sys.path.insert(0, sys.argv[2])
from tests.hostile_corpus import grey_png_7000, textured
from inspector.core import images, heatmap
from inspector.core.preprocess import prepare
from inspector.core.card import InputSpec, HeatmapSpec
kind = sys.argv[1]
img = cv2.resize(textured(700, 700), (5000, 5000))
data = {"grey-png-7000": grey_png_7000,
        "colour-png-5000": lambda: cv2.imencode(".png", img)[1].tobytes(),
        "colour-bmp-5000": lambda: cv2.imencode(".bmp", img)[1].tobytes()}[kind]()
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
h = images.probe(data, max_pixels=10**9)
base = rss()
spec = InputSpec(width=64, height=48, resize="stretch")
d = images.decode(data, target_size=(64, 48), max_pixels=10**9, strict=True)
x, g = prepare(d.rgb, spec)
ov = heatmap.overlay(d.rgb, np.random.rand(48, 64).astype(np.float32), g, spec,
                     HeatmapSpec(vmin=0, vmax=1), None)
images.encode(ov, "jpeg", quality=85)
print(f"{kind}: {(rss() - base) / (h.width * h.height):.1f} B/px")
"""
    for kind in ("grey-png-7000", "colour-png-5000", "colour-bmp-5000"):
        subprocess.run([sys.executable, "-c", code, kind, str(HERE)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=HERE, help="tree the server runs from")
    ap.add_argument("--hostile", type=int, default=16)
    ap.add_argument("--normal", type=int, default=10, help="normal frames, one per 0.5 s")
    ap.add_argument("--budget", type=int, default=None,
                    help="max_inflight_bytes for the server (default: its setting)")
    ap.add_argument("--measure-bytes-per-pixel", action="store_true")
    args = ap.parse_args()
    if args.measure_bytes_per_pixel:
        bytes_per_pixel()
        return
    os.environ.pop("INSPECTOR_DATABASE_URL", None)
    burst(args.repo.resolve(), args.hostile, args.normal, args.budget)


if __name__ == "__main__":
    main()
