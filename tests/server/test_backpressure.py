"""A full queue answers 503 with Retry-After instead of growing memory; the server recovers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.model_factory import make_package
from tests.server.conftest import good_frame
from tests.server.harness import ServerProcess, base_env

pytestmark = pytest.mark.slow


def slow_frame() -> bytes:
    """A 6000x6000 PNG: small on the wire, but about half a second to decode."""
    img = np.zeros((6000, 6000, 3), np.uint8)
    img[::7] = 200
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    return bytes(buf.tobytes())


def queue_depth(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith('inspector_queue_depth{model="tiny:1"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _post_into(out: list[httpx.Response], url: str, body: bytes) -> None:
    out.append(httpx.post(url, params={"station": "s"}, content=body,
                          headers={"Content-Type": "image/png"}, timeout=60))


def test_full_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    make_package(tmp_path / "models")
    env = base_env(tmp_path / "data", INSPECTOR_AUTH_ENABLED="false", INSPECTOR_QUEUE_SIZE="1")
    big = slow_frame()
    with ServerProcess(env, tmp_path / "models", tmp_path / "server.log") as server:
        url = f"{server.url}/v1/inspect"
        busy: httpx.Response | None = None
        for _ in range(10):  # the slow frame holds the only slot while it decodes
            first: list[httpx.Response] = []
            t = threading.Thread(target=_post_into, args=(first, url, big))
            t.start()
            while t.is_alive() and queue_depth(server.url) < 1:
                time.sleep(0.005)
            second = httpx.post(url, params={"station": "s"}, content=good_frame(),
                                headers={"Content-Type": "image/jpeg"}, timeout=60)
            t.join()
            assert first[0].status_code == 200, first[0].text
            if second.status_code == 503:
                busy = second
                break
            assert second.status_code == 200, second.text  # the slot was free again by then
        assert busy is not None, "never caught the queue full"
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["type"] == "ServerBusyError"
        again = httpx.post(url, params={"station": "s"}, content=good_frame(),
                           headers={"Content-Type": "image/jpeg"})
        assert again.status_code == 200
