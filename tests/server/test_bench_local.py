"""`inspector bench` in-process and the thread plan it shares with the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.bench import bench_in_process, bench_server
from inspector.core.runtime import ThreadPlan, plan_threads
from tests.server.conftest import defect_frame, good_frame


@pytest.mark.parametrize(("cores", "gpu", "expected"), [
    (1, False, ThreadPlan(1, 1)),
    (2, False, ThreadPlan(2, 1)),
    (8, False, ThreadPlan(4, 2)),
    (16, False, ThreadPlan(4, 4)),
    (16, True, ThreadPlan(2, 0)),
])
def test_thread_plan_splits_the_cores(cores: int, gpu: bool, expected: ThreadPlan) -> None:
    assert plan_threads(cores, gpu) == expected


def test_thread_plan_keeps_explicit_settings() -> None:
    assert plan_threads(2, workers=1) == ThreadPlan(1, 2)
    assert plan_threads(8, workers=3, intra_op_threads=1) == ThreadPlan(3, 1)


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


def test_core_pinner_gives_each_thread_its_own_core() -> None:
    import os
    import sys
    import threading

    from inspector.core.runtime import CorePinner

    if not sys.platform.startswith("linux"):
        pytest.skip("thread affinity is Linux-only")
    pinner = CorePinner()
    seen: list[set[int]] = []

    def pinned() -> None:
        pinner()
        seen.append(os.sched_getaffinity(0))

    for _ in range(len(pinner.cores)):
        t = threading.Thread(target=pinned)
        t.start()
        t.join()
    assert all(len(s) == 1 for s in seen)
    assert set().union(*seen) == set(pinner.cores)  # one thread per core, in turn
    assert os.sched_getaffinity(0) == set(pinner.cores)  # the caller itself is untouched
