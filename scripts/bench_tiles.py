"""Tiled inference on one large frame: milliseconds per stage (decode, tiles, inference,
stitch) and end to end through `Detector.judge_bytes`, on a chosen number of CPU cores.

    python scripts/bench_tiles.py --model models/line/1
    python scripts/bench_tiles.py --model /tmp/bench-models/mtd/1 --tile 448 --cores 2

`--model` is a package; `--tile` (source pixels) makes an untiled package tiled for the run
(a copy of its card gets a tiling section; the card is not part of the checksum), so any
224-px PatchCore package from `inspector train` or scripts/make_bench_model.py can be timed.
The frame is a synthetic 2592 x 1944 (5 MP) textured JPEG unless `--frame` names a file.
Stages run one after another with the same functions the Detector uses; figures are medians.
Threads follow the server's CPU plan (`plan_threads`: one intra-op thread per call, one frame's
chunks of tiles on every core at once); `--threads 2 --lanes 1` times one call at a time
spread by ONNX Runtime over both cores instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inspector.core import images, tiles
from inspector.core.card import TilingSpec, read_card, write_card
from inspector.core.package import CARD_FILE, INPUT_NAME
from inspector.core.pipeline import Detector
from inspector.core.runtime import RuntimeOptions, plan_threads


def synthetic_frame(width: int, height: int, seed: int = 0) -> bytes:
    """A grey textured surface (a fine grating with noise) as a quality-90 JPEG."""
    rng = np.random.default_rng(seed)
    stripes = 128 + 60 * np.sin(2 * np.pi * np.arange(width, dtype=np.float32) / 12)
    img = np.clip(rng.standard_normal((height, width), dtype=np.float32) * 8 + stripes, 0, 255)
    ok, buf = cv2.imencode(".jpg", img.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("could not encode the synthetic frame")
    return bytes(buf.tobytes())


def tiled_copy(model: Path, tile: int, overlap: float, workdir: Path) -> Path:
    """A copy of the package whose card tiles frames with `tile`-px tiles."""
    out = workdir / model.name
    shutil.copytree(model, out)
    card = read_card(out / CARD_FILE)
    tiling = TilingSpec(tile_width=tile, tile_height=tile, overlap=overlap)
    write_card(card.model_copy(update={"tiling": tiling}), out / CARD_FILE)
    return out


def timed(fn: Callable[[], Any]) -> tuple[Any, tuple[float, float]]:
    """`fn`'s value and its (wall clock, CPU time of this process) in milliseconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return value, ((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000)


def stages(detector: Detector, data: bytes) -> dict[str, tuple[float, float]]:
    """One frame through each stage in turn; (wall, CPU) milliseconds per stage."""
    spec, tiling, step = detector.card.input, detector.tiling, detector.model.options.max_batch
    assert tiling is not None
    header = detector.probe(data)
    decoded, decode_ms = timed(lambda: images.decode(
        data, target_size=detector.decode_target(header), header=header))
    (grid, batch), tiles_ms = timed(
        lambda: tiles.cut_frame(decoded.rgb, decoded.reduction, tiling, spec))
    outs, infer_ms = timed(lambda: list(detector.model.run_chunks(
        batch[i : i + step] for i in range(0, len(batch), step))))

    def stitch() -> np.ndarray:
        stitcher = tiles.Stitcher(grid)
        index = 0
        for out in outs:
            for amap, score in zip(out["anomaly_map"], out["score"], strict=True):
                stitcher.add(index, amap, float(score))
                index += 1
        return stitcher.result()

    _, stitch_ms = timed(stitch)
    _, total_ms = timed(lambda: detector.judge_bytes([data]))
    return {"decode": decode_ms, "tiles": tiles_ms, "inference": infer_ms, "stitch": stitch_ms,
            "judge_bytes": total_ms}


def op_times(model: Path, batch: np.ndarray, repeat: int) -> list[tuple[str, float]]:
    """Milliseconds per tile of each ONNX operator type (ONNX Runtime's profiler, 1 thread,
    no spinning), largest first: MatMul and ReduceMin are the nearest-neighbour search, Conv
    mostly the backbone (and the map's smoothing)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.gettempdir()) / "bench_tiles_ops")
    session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    for _ in range(repeat + 1):
        session.run(None, {INPUT_NAME: batch})
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    totals: Counter[str] = Counter()
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            totals[e["args"]["op_name"]] += e["dur"] / 1000 / (repeat + 1) / len(batch)
    return totals.most_common()


def bank_size(detector: Detector) -> str:
    """The memory bank's size as the card records it ('?' for other models)."""
    value = detector.card.metrics.get("bank_size")
    return str(int(value)) if isinstance(value, int | float) else "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="a model package folder")
    ap.add_argument("--tile", type=int, default=0, help="tile side in source px (0: the card's)")
    ap.add_argument("--overlap", type=float, default=0.25, help="with --tile")
    ap.add_argument("--frame", type=Path, help="an image file (default: synthetic 5 MP JPEG)")
    ap.add_argument("--width", type=int, default=2592)
    ap.add_argument("--height", type=int, default=1944)
    ap.add_argument("--cores", type=int, default=2, help="CPU cores to run on (affinity)")
    ap.add_argument("--max-batch", type=int, default=0,
                    help="tiles per ONNX Runtime call (0: the server's plan, 8 on a CPU)")
    ap.add_argument("--threads", type=int, default=0,
                    help="intra-op threads per call (0: the server's plan, 1 per core; each "
                         "frame's chunks then run on every core at once)")
    ap.add_argument("--lanes", type=int, default=0,
                    help="chunks of a frame run at once (0: cores / threads)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ops", action="store_true",
                    help="also ms per tile of each operator type (profiler, 1 thread)")
    args = ap.parse_args()

    cores = sorted(os.sched_getaffinity(0))[: args.cores]
    os.sched_setaffinity(0, cores)
    data = args.frame.read_bytes() if args.frame else synthetic_frame(args.width, args.height)
    with tempfile.TemporaryDirectory() as tmp:
        model = tiled_copy(args.model, args.tile, args.overlap, Path(tmp)) if args.tile \
            else args.model
        # The server's CPU plan for these cores, without spinning threads (its default).
        plan = plan_threads(len(cores), intra_op_threads=args.threads, max_batch=args.max_batch)
        options = RuntimeOptions(providers="cpu", intra_op_threads=plan.intra_op_threads,
                                 max_batch=plan.max_batch, allow_spinning=False,
                                 chunk_lanes=args.lanes)
        detector = Detector.load(model, options)
        if detector.tiling is None:
            sys.exit(f"{args.model} is not tiled: pass --tile SOURCE_PIXELS")
        stages(detector, data)  # warm-up
        runs = [stages(detector, data) for _ in range(args.repeat)]
        if args.ops:
            header = detector.probe(data)
            decoded = images.decode(data, target_size=detector.decode_target(header),
                                    header=header)
            _, tiles_in = tiles.cut_frame(decoded.rgb, decoded.reduction, detector.tiling,
                                          detector.card.input)
            ops = op_times(model / "model.onnx", tiles_in[: options.max_batch], args.repeat)
    header = detector.probe(data)
    print(f"{detector.card.ref}: {header.width}x{header.height} {header.format}, "
          f"{detector.tile_grid(header).count} tiles of {detector.tiling.tile_width} px -> "
          f"{detector.card.input.width} px, memory bank {bank_size(detector)}, {len(cores)} "
          f"core(s): {detector.model.chunk_lanes} chunk(s) of up to {options.max_batch} tiles "
          f"at once, {options.intra_op_threads} thread(s) each; median of {args.repeat}")
    print(f"{'':>12}  {'wall ms':>9}  {'CPU ms':>9}  (per frame; CPU: all threads together)")
    for key in runs[0]:
        wall = statistics.median(r[key][0] for r in runs)
        cpu = statistics.median(r[key][1] for r in runs)
        print(f"{key:>12}: {wall:9.1f}  {cpu:9.1f}")
    if args.ops:
        total = sum(ms for _, ms in ops)
        print(f"operators, wall ms per tile on one thread ({total:.1f} in all; under load "
              "read the shares):")
        for name, ms in ops[:6]:
            print(f"{name:>13}: {ms:8.2f}  {100 * ms / total:4.0f} %")
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} / {load[1]:.1f} (1 / 5 min) on {os.cpu_count()} cores: "
          "other processes slow the wall clock, the CPU time much less")


if __name__ == "__main__":
    main()
