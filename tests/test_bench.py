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


def test_failures_name_each_status_with_its_count_and_reason() -> None:
    from inspector.bench import Result, failure_hint

    r = Result("server, 2 clients", 10, 1.0, 10.0, errors=5,
               error_statuses={"503": 1, "401": 4},
               error_messages={"401": "unknown or revoked API key", "503": ""})
    assert r.failures() == "401 x4 (unknown or revoked API key), 503 x1"
    assert "--key" in failure_hint(r)
