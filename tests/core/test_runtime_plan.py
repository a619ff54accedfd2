"""The thread plan (inference calls at once and threads per call) and per-thread core pinning
that the server and `inspector bench` share."""

from __future__ import annotations

import pytest

from inspector.core.runtime import ThreadPlan, plan_threads


@pytest.mark.parametrize(("cores", "gpu", "expected"), [
    (1, False, ThreadPlan(1, 1)),
    (2, False, ThreadPlan(2, 1)),
    (8, False, ThreadPlan(4, 2)),
    (16, False, ThreadPlan(4, 4)),
    (16, True, ThreadPlan(3, 0, 32)),
])
def test_thread_plan_splits_the_cores(cores: int, gpu: bool, expected: ThreadPlan) -> None:
    assert plan_threads(cores, gpu) == expected


def test_thread_plan_keeps_explicit_settings() -> None:
    assert plan_threads(2, workers=1) == ThreadPlan(1, 2)
    assert plan_threads(8, workers=3, intra_op_threads=1) == ThreadPlan(3, 1)
    assert plan_threads(8, gpu=True, workers=4, max_batch=16) == ThreadPlan(4, 0, 16)


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
