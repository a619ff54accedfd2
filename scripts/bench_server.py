"""The server benchmark: the server with N clients against in-process ONNX Runtime, same model,
same images, same machine, decode included on both sides.

Starts a real `inspector serve` (auth on, SQLite, artifacts, MQTT to the broker when one
answers on 127.0.0.1:1883), then alternates in-process and server runs for a few rounds, because
a shared machine drifts by 10-20 % over minutes. Prints every run and the median ratio.

    python scripts/bench_server.py --model /tmp/bench-models/mtd/1 --images /tmp/bench-images
    python scripts/bench_server.py --model M --images I --rounds 5 --env INSPECTOR_MAX_BATCH=4

In-process runs: batch 1 and batch 8 in one loop with ONNX Runtime's own threading (raw ONNX
Runtime), and, on a CPU with several cores, several loops sharing one session with
the cores split between them as the server does. The ratio is taken against the best of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from inspector import bench
from inspector.core.runtime import plan_threads, uses_gpu


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_up(host: str = "127.0.0.1", port: int = 1883) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not become ready")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="model package folder")
    ap.add_argument("--images", type=Path, nargs="+", required=True, help="image files/folders")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=15.0, help="measuring time per run")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--env", action="append", default=[], metavar="INSPECTOR_X=V",
                    help="server setting for this run (repeatable)")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    args = ap.parse_args()

    blobs = bench.load_images(args.images)
    if not blobs:
        raise SystemExit("no images found")
    work = Path(tempfile.mkdtemp(prefix="inspector-bench-"))
    models = work / "models"
    shutil.copytree(args.model, models / "bench" / "1")
    env = {**os.environ, "INSPECTOR_DATA_DIR": str(work / "data"), "INSPECTOR_LINE": "bench"}
    if broker_up():
        env["INSPECTOR_MQTT_URL"] = "mqtt://127.0.0.1:1883"
    env.update(kv.split("=", 1) for kv in args.env)
    exe = [str(Path(sys.executable).with_name("inspector"))]
    key = subprocess.run([*exe, "keys", "create", "--role", "camera", "--name", "bench"],
                         env=env, check=True, capture_output=True, text=True).stdout.split()[-1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "server.log").open("wb")
    server = subprocess.Popen([*exe, "serve", "--models", str(models), "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    plan = plan_threads(gpu=uses_gpu())
    rows: list[dict[str, object]] = []
    ratios: list[float] = []
    try:
        wait_ready(url, server)
        print(f"{len(blobs)} images, {args.clients} clients, {args.seconds:.0f} s runs, "
              f"MQTT {'on' if 'INSPECTOR_MQTT_URL' in env else 'off'}, server log {log.name}")
        for rnd in range(1, args.rounds + 1):
            local = [bench.bench_in_process(args.model, blobs, b, args.seconds) for b in (1, 8)]
            if plan.workers > 1:
                local.append(bench.bench_in_process(
                    args.model, blobs, 1, args.seconds, workers=plan.workers,
                    intra_op_threads=plan.intra_op_threads))
            remote = bench.bench_server(url, blobs, args.clients, args.seconds, key=key)
            best = max(r.images_per_s for r in local)
            ratios.append(remote.images_per_s / best)
            for r in [*local, remote]:
                print(f"round {rnd}  {r.name:<48} {r.images_per_s:6.1f}/s  p50 {r.p50_ms:6.1f}"
                      f"  p99 {r.p99_ms:6.1f} ms  errors {r.errors}")
                rows.append({"round": rnd, **r.as_dict()})
            print(f"round {rnd}  server / best in-process = {ratios[-1]:.2f}")
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    print(f"median server / best in-process over {len(ratios)} rounds: "
          f"{statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})")
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "ratios": ratios}, indent=1))
    shutil.rmtree(work / "data", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
