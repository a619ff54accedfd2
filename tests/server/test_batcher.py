"""Dynamic batching and admission, without HTTP; the error mapping through a real ASGI app."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from inspector.core.errors import ImageDecodeError
from inspector.server.batcher import Admission, MicroBatcher
from inspector.server.errors import ServerBusyError, install_error_handlers

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_concurrent_items_are_batched_up_to_max_batch() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def double(items: list[int]) -> list[int]:
        gate.wait(5)  # hold the first batch so that the others queue up behind it
        sizes.append(len(items))
        return [2 * x for x in items]

    async def main() -> list[int]:
        with ThreadPoolExecutor(1) as pool:
            b: MicroBatcher[int, int] = MicroBatcher("t", double, pool, max_batch=4,
                                                     max_delay_ms=50)
            b.start()
            tasks = [asyncio.create_task(b.submit(i)) for i in range(11)]
            await asyncio.sleep(0.05)
            gate.set()
            results = await asyncio.gather(*tasks)
            await b.stop()
        return [r for r, _info in results]

    assert run(main()) == [2 * i for i in range(11)]
    assert sum(sizes) == 11 and max(sizes) == 4 and len(sizes) == 3


def test_batch_info_and_single_item_after_delay() -> None:
    async def main() -> tuple[int, int]:
        with ThreadPoolExecutor(1) as pool:
            b: MicroBatcher[int, int] = MicroBatcher("t", lambda xs: xs, pool, max_batch=8,
                                                     max_delay_ms=1)
            b.start()
            value, info = await b.submit(7)
            await b.stop()
        return value, info.size

    assert run(main()) == (7, 1)


def test_errors_reach_every_caller_in_the_batch() -> None:
    def boom(items: list[int]) -> list[int]:
        raise ImageDecodeError("bad batch")

    async def main() -> list[object]:
        with ThreadPoolExecutor(1) as pool:
            b: MicroBatcher[int, int] = MicroBatcher("t", boom, pool, max_batch=4,
                                                     max_delay_ms=5)
            b.start()
            calls = (b.submit(i) for i in range(3))
            out: list[object] = await asyncio.gather(*calls, return_exceptions=True)
            await b.stop()
        return out

    assert all(isinstance(r, ImageDecodeError) for r in run(main()))


def test_admission_bounds_in_flight() -> None:
    a = Admission("tiny:1", 2)
    with a.slot(), a.slot():
        with pytest.raises(ServerBusyError) as err, a.slot():
            pass
        assert err.value.status_code == 503
    assert a.in_flight == 0


def test_busy_maps_to_503_with_retry_after() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/busy")
    def busy() -> None:
        raise ServerBusyError("queue full", hint="retry", retry_after_s=2)

    @app.get("/bug")
    def bug() -> None:
        raise RuntimeError("secret detail")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/busy")
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert r.json()["error"]["type"] == "ServerBusyError"
        r = client.get("/bug")
        assert r.status_code == 500 and "secret" not in r.text
        assert "log reference" in r.json()["error"]["message"]
