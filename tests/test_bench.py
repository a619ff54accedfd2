"""`inspector bench`: a package in-process (with the server's thread plan) and a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.bench import bench_in_process, bench_server
from tests.server.conftest import defect_frame, good_frame


def test_in_process_bench_one_and_several_threads(tiny_package: Path) -> None:
    blobs = [good_frame(seed=i) for i in range(3)] + [defect_frame()]
    one = bench_in_process(tiny_package, blobs, batch=1, seconds=0.3)
    two = bench_in_process(tiny_package, blobs, batch=1, seconds=0.3, workers=2,
                           intra_op_threads=1)
    assert one.images > 0 and two.images > 0
    assert "2 threads" in two.name and "threads" not in one.name


def test_server_bench_counts_connection_failures() -> None:
    from tests.server.harness import free_port

    r = bench_server(f"http://127.0.0.1:{free_port()}", [good_frame()], clients=2,
                     seconds=0.3, warmup_s=0.0)
    assert r.images == 0 and r.errors > 0 and "ConnectionRefusedError" in r.error_statuses
    with pytest.raises(ValueError, match="http://"):
        bench_server("https://example.invalid", [good_frame()], seconds=0.1)


def test_answers_after_the_window_are_counted_as_late_not_as_images() -> None:
    """A server slower than the measuring time: nothing measured, but the late answers are
    counted so the CLI can say "give it longer" instead of blaming the server."""
    import socket
    import threading
    import time

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def slow_server() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                time.sleep(0.8)  # slower than the whole window
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                             b"Connection: close\r\n\r\n{}")

    threading.Thread(target=slow_server, daemon=True).start()
    try:
        r = bench_server(f"http://127.0.0.1:{port}", [good_frame()], clients=1, seconds=0.3,
                         warmup_s=0.0)
    finally:
        listener.close()
    assert r.images == 0 and r.errors == 0 and r.late == 1


def test_failures_name_each_status_with_its_count_and_reason() -> None:
    from inspector.bench import Result, failure_hint

    r = Result("server, 2 clients", 10, 1.0, 10.0, errors=5,
               error_statuses={"503": 1, "401": 4},
               error_messages={"401": "unknown or revoked API key", "503": ""})
    assert r.failures() == "401 x4 (unknown or revoked API key), 503 x1"
    assert "--key" in failure_hint(r)


def test_in_process_report_names_the_provider_and_splits_the_time(tiny_package: Path) -> None:
    from inspector.core.runtime import cuda_device_count

    blobs = [good_frame(seed=i) for i in range(3)]
    r = bench_in_process(tiny_package, blobs, batch=8, seconds=0.3, providers="cpu")
    assert r.provider == "cpu" and r.provider_reason == "cpu: providers=cpu asked for"
    assert r.decode_ms is not None and r.decode_ms > 0
    assert r.infer_ms is not None and r.infer_ms > 0
    assert r.copy_ms == 0.0  # the CPU session reads the host batch: nothing to copy
    assert r.gpu_memory_mib is None
    if cuda_device_count() == 0:
        auto = bench_in_process(tiny_package, blobs, batch=1, seconds=0.2)
        assert auto.provider_reason == "cpu: no CUDA device found"


def test_bench_cli_json_has_the_gpu_report_fields(tiny_package: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from inspector.cli.app import app

    r = CliRunner().invoke(app, ["bench", str(tiny_package), "--seconds", "0.2", "--json",
                                 "--batch", "1", "--batch", "4", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    runs = json.loads(r.stdout)["results"]
    assert [x["name"] for x in runs][:2] == ["in-process batch 1", "in-process batch 4"]
    for run in runs:
        assert {"provider", "provider_reason", "decode_ms", "infer_ms", "copy_ms",
                "gpu_memory_mib", "p50_ms", "p99_ms"} <= set(run)
    bad = CliRunner().invoke(app, ["bench", str(tiny_package), "--providers", "gpu"])
    assert bad.exit_code == 2 and "--providers 'gpu'" in bad.stderr
