"""Swaps under concurrent load: deploy, shadow, promote and rollback while cameras post frames
as fast as they can. No request may fail; frames already admitted finish on the model they
started with, new ones use the new model, and a replaced model unloads once idle."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.lifecycle.conftest import RegServer, frame, wait_for
from tests.lifecycle.packing import tar_gz
from tests.model_factory import make_package

pytestmark = pytest.mark.slow


def test_swaps_under_load_drop_no_request(reg: RegServer, pkg_root: Path) -> None:
    for version in ("2", "3"):
        pkg = make_package(pkg_root, version=version, width=320, height=240)
        assert reg.upload(tar_gz(pkg)).status_code == 201
    bodies = [frame(level, seed) for seed in range(3) for level in (0, 120, 250)]
    stop = threading.Event()
    results: list[tuple[int, str | None, float]] = []
    lock = threading.Lock()

    def camera(worker: int) -> None:
        with httpx.Client(timeout=60) as client:
            i = worker
            while not stop.is_set():
                r = reg.inspect("s1", bodies[i % len(bodies)], client)
                version = r.json()["model"]["version"] if r.status_code == 200 else None
                with lock:
                    results.append((r.status_code, version, time.monotonic()))
                i += 1

    threads = [threading.Thread(target=camera, args=(w,), daemon=True) for w in range(6)]
    for t in threads:
        t.start()
    swaps: list[tuple[float, str]] = []

    def swap(method: str, path: str, expect_active: str, **kw: object) -> None:
        time.sleep(0.6)
        r = reg.call(method, path, **kw)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
        swaps.append((time.monotonic(), expect_active))

    try:
        swap("PUT", "/v1/stations/s1/model", "1", json={"model": "tiny:2", "mode": "shadow"})
        swap("POST", "/v1/stations/s1/promote", "2")
        swap("POST", "/v1/stations/s1/rollback", "1")
        swap("PUT", "/v1/stations/s1/model", "3", json={"model": "tiny:3"})
        swap("POST", "/v1/stations/s1/rollback", "1")
        swap("POST", "/v1/stations/s1/rollback", "3")
        time.sleep(0.6)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)

    statuses = Counter(status for status, _, _ in results)
    assert statuses == {200: len(results)}, statuses
    assert len(results) > 100
    seen = Counter(version for _, version, _ in results)
    assert set(seen) == {"1", "2", "3"}, seen
    # After each swap has answered, every request that *started* later uses the new model.
    # (A request's start is at most its own latency before its finish; allow a margin.)
    for (t_swap, active), nxt in zip(swaps, [*swaps[1:], (float("inf"), "")], strict=True):
        window = [v for _, v, t_done in results if t_swap + 0.5 < t_done < nxt[0]]
        assert window and set(window) == {active}, (active, Counter(window))
    # tiny:2 is neither active, shadow nor the rollback target any more: it was unloaded.
    wait_for(lambda: "tiny:2" not in reg.loaded(), what="tiny:2 to unload")
    assert reg.loaded() == ["tiny:1", "tiny:3"]
    rep = reg.call("GET", "/v1/stations/s1/shadow-report?model=tiny:2").json()
    assert rep["n"] > 0
