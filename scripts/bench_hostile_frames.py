"""Hostile-frame burst: 16 concurrent 7000x7000 grey PNGs (47 KB each) on one station while a
normal small frame is posted every 0.5 s on another. Prints the normal frames' latencies, the
hostile frames' status codes and the server process's peak RSS (VmHWM).

    python scripts/bench_hostile_frames.py                      # this checkout
    python scripts/bench_hostile_frames.py --repo /tmp/old      # another tree (e.g. git archive)
    python scripts/bench_hostile_frames.py --measure-bytes-per-pixel
    python scripts/bench_hostile_frames.py --concurrent 64 --worst-case   # default settings

`--worst-case` posts the largest legal frames at the default settings instead: white (so they
fail and their heatmap is drawn and stored) 7071x7071 grey PNGs (49.99 Mpx, just under
max_pixels) and, one in eight, 16384x3000 colour PNGs (max_side long, 49.15 Mpx).

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


def white_png(width: int, height: int, colour: bool = False) -> bytes:
    """An all-white PNG (grey or RGB), a few hundred KB: fails the test model's brightness check."""
    import zlib

    row = b"\x00" + b"\xff" * (width * (3 if colour else 1))
    comp = zlib.compressobj(9)
    idat = b"".join([comp.compress(row) for _ in range(height)] + [comp.flush()])
    return _png_with_idat(width, height, idat, colour)


def _png_with_idat(width: int, height: int, idat: bytes, colour: bool) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2 if colour else 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def burst(repo: Path, hostile: int, normal: int, budget: int | None,
          worst_case: bool = False) -> None:
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
            if worst_case:
                square, wide = white_png(7071, 7071), white_png(16384, 3000, colour=True)
                frames = [wide if i % 8 == 7 else square for i in range(hostile)]
            else:
                frames = [grey_png_7000()] * hostile
            small = good_frame()
            url = f"{srv.url}/v1/inspect"
            httpx.post(url, params={"station": "normal"}, content=small,
                       headers={"Content-Type": "image/jpeg"})  # warm up
            base_rss = vm(pid, "VmRSS")
            statuses: Counter[int] = Counter()
            latencies: list[float] = []

            verdicts: Counter[str] = Counter()
            retry_after: Counter[str | None] = Counter()

            def hostile_post(i: int) -> None:
                r = httpx.post(url, params={"station": "hostile"}, content=frames[i],
                               headers={"Content-Type": "image/png"}, timeout=600)
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    verdicts[r.json().get("verdict", "?")] += 1
                elif r.status_code == 503:
                    retry_after[r.headers.get("Retry-After")] += 1

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
        sizes = sorted({len(f) for f in frames})
        print(f"hostile frames: {hostile} x {sizes} B -> {dict(statuses)} in {wall:.1f} s")
        print(f"  verdicts of the 200s: {dict(verdicts)}; Retry-After of the 503s: "
              f"{dict(retry_after)}")
        print(f"normal frames (ms): median {statistics.median(latencies):.0f}, "
              f"max {max(latencies):.0f}, all {[round(x) for x in latencies]}")
        print(f"server RSS: {base_rss / 2**20:.0f} MiB before, peak {peak / 2**20:.0f} MiB "
              f"(+{(peak - base_rss) / 2**20:.0f} MiB; max_inflight_bytes "
              f"{(budget or 1024**3) / 2**20:.0f} MiB)")


def bytes_per_pixel(repo: Path) -> None:
    """Peak RSS growth per pixel, as the server works on a frame: `decode` = strict decode +
    resize to the model input, per decoded pixel; `full` = that + heatmap overlay (bounded to
    heatmap.SERVER_MAX_SIDE where the tree has it) + JPEG encode, per decoded pixel; `overlay` =
    (full - decode) per overlay pixel. Each figure comes from a fresh process that only reads the
    frame from a file (building the frame in the same process would raise the peak before the
    measurement starts)."""
    import subprocess

    import cv2

    from tests.hostile_corpus import grey_png_7000, textured

    code = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
from inspector.core import images, heatmap
from inspector.core.preprocess import prepare
from inspector.core.card import InputSpec, HeatmapSpec
path, stage = sys.argv[2], sys.argv[3]
data = open(path, "rb").read()
rss = lambda: next(int(l.split()[1]) * 1024 for l in open("/proc/self/status")
                   if l.startswith("VmHWM:"))  # peak resident
h = images.probe(data, max_pixels=10**9)
spec = InputSpec(width=64, height=48, resize="stretch")
amap = np.random.rand(48, 64).astype(np.float32)
hs = HeatmapSpec(vmin=0, vmax=1)
bound = getattr(heatmap, "SERVER_MAX_SIDE", None)
# the peak so far (imports, reading the file) is reset: Linux's clear_refs 5 resets VmHWM
open("/proc/self/clear_refs", "w").write("5")
base = rss()
d = images.decode(data, target_size=(64, 48), max_pixels=10**9, strict=True)
x, g = prepare(d.rgb, spec)
shape = (0, 0)
if stage == "full":
    ov = (heatmap.overlay(d.rgb, amap, g, spec, hs, None, max_side=bound) if bound
          else heatmap.overlay(d.rgb, amap, g, spec, hs, None))
    images.encode(ov, "jpeg", quality=85)
    shape = ov.shape[:2]
print(rss() - base, h.width * h.height, shape[0] * shape[1])
"""

    def colour(w: int, h: int, ext: str) -> bytes:
        return cv2.imencode(ext, cv2.resize(textured(700, 700), (w, h)))[1].tobytes()

    kinds = {
        "grey-png-7000": grey_png_7000,
        "white-grey-png-7071": lambda: white_png(7071, 7071),
        "colour-png-5000": lambda: colour(5000, 5000, ".png"),
        "colour-bmp-5000": lambda: colour(5000, 5000, ".bmp"),
        "colour-png-16384x3000": lambda: colour(16384, 3000, ".png"),
        "colour-png-2048": lambda: colour(2048, 2048, ".png"),
        "colour-png-1600x1200": lambda: colour(1600, 1200, ".png"),
        "colour-bmp-2048": lambda: colour(2048, 2048, ".bmp"),
        "colour16-png-5000": lambda: cv2.imencode(
            ".png", cv2.resize(textured(700, 700), (5000, 5000)).astype("uint16") * 257)[1]
        .tobytes(),
        "colour-png-640x480": lambda: colour(640, 480, ".png"),
    }
    print(f"tree: {repo}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, make in kinds.items():
            path = Path(tmp) / kind
            path.write_bytes(make())
            out = {}
            for stage in ("decode", "full"):
                res = subprocess.run([sys.executable, "-c", code, str(repo), str(path), stage],
                                     check=True, capture_output=True, text=True)
                out[stage] = [int(v) for v in res.stdout.split()]
            (dec, px, _), (full, _, opx) = out["decode"], out["full"]
            print(f"{kind:24s} decode {dec / px:5.1f} B/px   full {full / px:5.1f} B/px   "
                  f"overlay {max(full - dec, 0) / opx:5.1f} B per overlay px ({opx} px)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=HERE, help="tree the server runs from")
    ap.add_argument("--hostile", "--concurrent", dest="hostile", type=int, default=16,
                    help="hostile frames posted at once")
    ap.add_argument("--worst-case", action="store_true",
                    help="the largest legal frames at the default settings (see above)")
    ap.add_argument("--normal", type=int, default=10, help="normal frames, one per 0.5 s")
    ap.add_argument("--budget", type=int, default=None,
                    help="max_inflight_bytes for the server (default: its setting)")
    ap.add_argument("--measure-bytes-per-pixel", action="store_true")
    args = ap.parse_args()
    if args.measure_bytes_per_pixel:
        bytes_per_pixel(args.repo.resolve())
        return
    os.environ.pop("INSPECTOR_DATABASE_URL", None)
    burst(args.repo.resolve(), args.hostile, args.normal, args.budget, args.worst_case)


if __name__ == "__main__":
    main()
