"""The process-wide memory budget for frames in flight: reservations from the
Content-Length before the body is read, grown to the frame's estimate from its header before
decoding; 503 + Retry-After when it does not fit now, 413 when it never could."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from inspector.lifecycle.batcher import MemoryBudget
from inspector.lifecycle.errors import PayloadTooLargeError, ServerBusyError
from tests.hostile_corpus import png_bytes
from tests.model_factory import make_package
from tests.server.conftest import good_frame
from tests.server.harness import ServerProcess, base_env, read_answer

MIB = 2**20


def test_budget_reserves_grows_and_releases() -> None:
    budget = MemoryBudget(100)
    with budget.reserve(30) as a:
        a.grow_to(60)
        a.grow_to(10)  # never shrinks while held
        assert budget.in_use == 60
        with pytest.raises(ServerBusyError) as busy, budget.reserve(50):
            pass
        assert busy.value.retry_after_s >= 1 and budget.in_use == 60
        with pytest.raises(PayloadTooLargeError), budget.reserve(101):
            pass
        with budget.reserve(40):
            assert budget.in_use == 100
    assert budget.in_use == 0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("budget")
    make_package(root / "models")
    make_package(root / "models", name="other")
    env = base_env(root / "data", INSPECTOR_AUTH_ENABLED="false", INSPECTOR_SAMPLE_PASSES="0",
                   INSPECTOR_MAX_INFLIGHT_BYTES=str(16 * MIB),
                   # the budget must hold the largest legal frame (settings refuse less):
                   # 12 MiB of body + 100,000 px (316x316: 3.4 MB in flight) < 16 MiB
                   INSPECTOR_MAX_BODY_BYTES=str(12 * MIB),
                   INSPECTOR_MAX_PIXELS="100000",
                   INSPECTOR_STATIONS='{"s1": "tiny:1", "s2": "other:1"}')
    with ServerProcess(env, root / "models", root / "server.log") as srv:
        yield srv


def stalled_upload(port: int, station: str, length: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST /v1/inspect?station={station} HTTP/1.1\r\nHost: x\r\n"
                 f"Content-Type: image/jpeg\r\nContent-Length: {length}\r\n\r\n".encode())
    return sock


def test_declared_length_over_the_budget_is_413_before_the_body(server: ServerProcess) -> None:
    """Over the budget is also over max_body_bytes (settings refuse a budget smaller than the
    largest legal frame), so the body limit answers first."""
    with stalled_upload(server.port, "s1", 20 * MIB) as sock:
        head = read_answer(sock)  # nothing of the body was sent
    assert head.startswith("HTTP/1.1 413"), head
    assert "max_body_bytes" in head


def test_budget_is_shared_by_all_models(server: ServerProcess) -> None:
    """An upload declared at 12 MiB for one model's station holds the budget: a 6 MiB upload
    for another model is refused at once with 503, a small frame still fits."""
    with stalled_upload(server.port, "s1", 12 * MIB) as big:
        time.sleep(0.2)
        with stalled_upload(server.port, "s2", 6 * MIB) as second:
            head = read_answer(second)
        assert head.startswith("HTTP/1.1 503"), head
        assert "Retry-After: 1" in head.replace("retry-after", "Retry-After")
        r = httpx.post(f"{server.url}/v1/inspect", params={"station": "s2"},
                       content=good_frame(), headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 200, r.text
        big.close()
    time.sleep(0.3)
    r = httpx.post(f"{server.url}/v1/inspect", params={"station": "s1"}, content=good_frame(),
                   headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text


def test_largest_legal_frame_fits_the_budget(server: ServerProcess) -> None:
    """A frame at max_pixels (316x316 of 100,000) fits the 16 MiB budget and is judged; a
    2000x2000 PNG (12 KB, about 70 MB in flight) is refused from its header, by max_pixels."""
    ok = httpx.post(f"{server.url}/v1/inspect", params={"station": "s1"},
                    content=png_bytes(316, 316), headers={"Content-Type": "image/png"})
    assert ok.status_code == 200, ok.text
    data = png_bytes(2000, 2000)
    r = httpx.post(f"{server.url}/v1/inspect", params={"station": "s1"}, content=data,
                   headers={"Content-Type": "image/png"})
    assert r.status_code == 413, r.text
    err = r.json()["error"]
    assert err["type"] == "ImageTooLargeError"
    assert "2000x2000" in err["message"] or "4000000" in err["message"], err
