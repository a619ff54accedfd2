"""The edge GPU figures in one run: raw in-process ONNX Runtime at batch 1/8/32 and a real
`inspector serve` end to end with JPEG bytes, on TensorRT (fp16 engines) and on CUDA.

    python scripts/gpu_bench.py                      # on a GPU machine
    python scripts/gpu_bench.py --smoke              # anywhere: a minute on a CPU
    python scripts/gpu_bench.py --prepare-only --work gpu-bench-work   # train here, run there

Steps: (1) the model: `--model DIR`, else the one a previous run left in `--work`, else trained
with `inspector train` on ../shared/data/mtd when it is there, else on the synthetic data set
(`inspector dataset synth`); (2) camera-like 640x480 JPEGs; (3) per provider (tensorrt, cuda;
cpu without a GPU): `inspector bench MODEL --batch 1 --batch 8 --batch 32 --json`, then
`inspector serve` with INSPECTOR_PROVIDERS set and `inspector bench --server` against it. Both
share one TensorRT engine cache (the serve run's data folder), so the server finds its engine
built. Prints a markdown table and writes gpu_bench.json under $OUT (or --out) when given.

Training needs the [train] extra (torch). A GPU machine without it can run on a model
prepared elsewhere: `--prepare-only --work W` here, then carry W and pass `--work W` there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_server import free_port, wait_ready  # noqa: E402

from inspector import bench  # noqa: E402
from inspector.core.providers import DeviceProbe, gpu_memory_mib  # noqa: E402
from inspector.core.runtime import uses_gpu  # noqa: E402

SHARED_MTD = ROOT.parent / "shared" / "data" / "mtd"
CLI = [sys.executable, "-c", "from inspector.cli import main; main()"]


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> str:
    """An `inspector` command; its stdout. Exits with the command's error line on failure."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, env=full,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"inspector {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def prepare_model(work: Path, data: Path | None, smoke: bool) -> Path:
    """The package to measure: one left in `work`, else trained (on `data`, MTD, or synth)."""
    model = work / "models" / "bench" / "1"
    if (model / "card.json").is_file():
        print(f"model: {model} (from an earlier run)")
        return model
    if data is None and SHARED_MTD.is_dir() and not smoke:
        data = SHARED_MTD
    if data is None:
        data = work / "synth"
        sizes = ["--n-train", "16", "--n-test-good", "4", "--n-test-defect", "2",
                 "--size", "128"] if smoke else []
        run_cli(["dataset", "synth", "--out", str(data), *sizes])
    knobs = ["--set", "image_size=128"] if smoke else []
    print(f"model: training on {data} (minutes) ...", flush=True)
    run_cli(["train", "--data", str(data), "--out", str(model), *knobs])
    return model


def write_frames(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, blob in enumerate(bench.synthetic_jpegs(n)):
        (folder / f"frame-{i:03d}.jpg").write_bytes(blob)
    return folder


def readyz(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
    """/readyz once it answers 200 (TensorRT may build engines first: minutes)."""
    wait_ready(url, proc, timeout_s)
    with urllib.request.urlopen(f"{url}/readyz", timeout=10) as r:
        return dict(json.loads(r.read()))


def serve_and_bench(model: Path, frames: Path, provider: str, state: Path,
                    args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """`inspector serve` on `provider`, N clients posting JPEGs; (/readyz, bench result)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INSPECTOR_PROVIDERS": provider,
           "INSPECTOR_LOG_LEVEL": "INFO"}
    log = state / f"serve-{provider}.log"
    state.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen([*CLI, "serve", "--models", str(model.parent.parent),
                                 "--port", str(port), "--data-dir", str(state), "--no-auth"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            ready = readyz(url, proc, args.ready_timeout)
            result = json.loads(run_cli([
                "bench", "--server", url, "--images", str(frames), "--clients",
                str(args.clients), "--seconds", str(args.seconds), "--warmup",
                str(args.warmup), "--json"]))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return ready, result


def machine() -> dict[str, Any]:
    import onnxruntime

    probe = DeviceProbe.detect()
    return {"gpu": probe.gpu, "cuda_devices": probe.cuda_devices,
            "tensorrt": probe.trt_version, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(), "cpu_cores": os.cpu_count()}


def table(rows: list[dict[str, Any]]) -> str:
    """The figures as a markdown table."""
    head = ("| provider | run | images/s | p50 ms | p99 ms | decode ms/img | infer ms/img "
            "| copy ms/img | GPU MiB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|")

    def f(v: object, digits: int = 1) -> str:
        return "-" if not isinstance(v, int | float) else f"{v:.{digits}f}"

    lines = [head]
    for r in rows:
        lines.append(f"| {r['provider']} | {r['name']} | {f(r['images_per_s'])} | "
                     f"{f(r['p50_ms'])} | {f(r['p99_ms'])} | {f(r.get('decode_ms'), 2)} | "
                     f"{f(r.get('infer_ms'), 2)} | {f(r.get('copy_ms'), 2)} | "
                     f"{f(r.get('gpu_memory_mib'), 0)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="quick run (any machine, a CPU too)")
    ap.add_argument("--model", type=Path, help="package to measure (skips training)")
    ap.add_argument("--data", type=Path, help="training data (default: MTD, else synthetic)")
    ap.add_argument("--work", type=Path, help="work folder (kept; default: a temporary one)")
    ap.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get(
        "OUT") else None, help="folder for gpu_bench.json (default: $OUT when set)")
    ap.add_argument("--providers", nargs="*", help="default: tensorrt cuda (cpu without GPU)")
    ap.add_argument("--prepare-only", action="store_true", help="train and stop")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--clients", type=int, default=None)
    ap.add_argument("--warmup", type=float, default=None)
    ap.add_argument("--ready-timeout", type=float, default=1200.0)
    args = ap.parse_args()
    gpu = uses_gpu("auto")
    args.seconds = args.seconds or (1.0 if args.smoke else 15.0)
    args.clients = args.clients or (64 if gpu else 4)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.smoke else 5.0)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    model = args.model or prepare_model(work, args.data, args.smoke)
    if args.prepare_only:
        print(f"prepared {model}; carry {work} and run with --work {work}")
        return
    frames = write_frames(work / "frames", 16 if args.smoke else 64)
    providers = args.providers or (["tensorrt", "cuda"] if gpu else ["cpu"])
    info = machine()
    print(f"machine: {json.dumps(info)}", flush=True)
    rows: list[dict[str, Any]] = []
    runs: dict[str, Any] = {}
    report: dict[str, Any] = {"machine": info, "model": str(model), "smoke": args.smoke,
                              "runs": runs}
    for provider in providers:
        state = work / f"state-{provider}"
        print(f"{provider}: in-process batch 1/8/32 ...", flush=True)
        raw = json.loads(run_cli([
            "bench", str(model), "--providers", provider, "--images", str(frames),
            "--batch", "1", "--batch", "8", "--batch", "32", "--seconds", str(args.seconds),
            "--data-dir", str(state), "--json"]))
        print(f"{provider}: inspector serve + {args.clients} clients ...", flush=True)
        ready_body, served = serve_and_bench(model, frames, provider, state, args)
        server_run = served["results"][0]
        served_by: dict[str, Any] = next(iter(ready_body.get("providers", {}).values()), {})
        server_run["provider"] = served_by.get("provider", provider)
        for r in [*raw["results"], server_run]:
            rows.append({**r, "provider": r.get("provider") or provider})
        runs[provider] = {"in_process": raw, "server": served,
                          "readyz_providers": ready_body.get("providers")}
    report["host_gpu_memory_mib_after"] = gpu_memory_mib()
    print()
    print(table(rows))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_bench.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "gpu_bench.md").write_text(table(rows) + "\n")
        print(f"\nwrote {args.out / 'gpu_bench.json'}")


if __name__ == "__main__":
    main()
