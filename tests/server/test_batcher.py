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
from inspector.lifecycle.batcher import Admission, MicroBatcher
from inspector.lifecycle.errors import ServerBusyError
from inspector.server.errors import install_error_handlers

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


def test_concurrency_runs_batches_side_by_side() -> None:
    # Each batch waits for another one to be running: with one slot this would time out.
    both = threading.Barrier(2, timeout=5)
    sizes: list[int] = []

    def meet(items: list[int]) -> list[int]:
        both.wait()
        sizes.append(len(items))
        return items

    async def main() -> list[int]:
        with ThreadPoolExecutor(2) as pool:
            b: MicroBatcher[int, int] = MicroBatcher("t", meet, pool, max_batch=2,
                                                     max_delay_ms=0, concurrency=2)
            b.start()
            results = await asyncio.gather(*(b.submit(i) for i in range(4)))
            await b.stop()
        return [r for r, _info in results]

    assert run(main()) == [0, 1, 2, 3]
    assert sorted(sizes) == [2, 2]


def test_a_burst_is_shared_between_idle_slots() -> None:
    """8 frames arriving together on 2 idle slots run as 4 + 4 at the same time."""
    both = threading.Barrier(2, timeout=5)
    sizes: list[int] = []

    def meet(items: list[int]) -> list[int]:
        sizes.append(len(items))
        both.wait()  # each batch only finishes once the other one runs beside it
        return items

    async def main() -> list[int]:
        with ThreadPoolExecutor(2) as pool:
            b: MicroBatcher[int, int] = MicroBatcher("t", meet, pool, max_batch=8,
                                                     max_delay_ms=20, concurrency=2)
            b.start()
            results = await asyncio.gather(*(b.submit(i) for i in range(8)))
            await b.stop()
        return [r for r, _info in results]

    assert run(main()) == list(range(8))
    assert sizes == [4, 4]


def test_no_batching_delay_while_another_slot_is_idle() -> None:
    async def main() -> float:
        with ThreadPoolExecutor(2) as pool:
            b: MicroBatcher[int, int] = MicroBatcher("t", lambda xs: xs, pool, max_batch=8,
                                                     max_delay_ms=500, concurrency=2)
            b.start()
            _value, info = await b.submit(1)
            await b.stop()
        return info.queue_ms

    assert run(main()) < 250  # not held for max_delay: the other slot could take a next frame


def test_items_that_queued_behind_a_busy_slot_start_without_the_delay() -> None:
    """max_delay counts from the first item's arrival: frames that waited for a free slot
    are not held back another max_delay once it frees."""
    gate = threading.Event()

    def hold_first(items: list[int]) -> list[int]:
        gate.wait(5)
        return items

    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1) as pool:
            b: MicroBatcher[int, int] = MicroBatcher("t", hold_first, pool, max_batch=8,
                                                     max_delay_ms=300)
            b.start()
            first = asyncio.create_task(b.submit(0))
            await asyncio.sleep(0.35)  # the first batch (one item) has started and is held
            second = asyncio.create_task(b.submit(1))
            await asyncio.sleep(0.35)  # the second item has now waited longer than max_delay
            released = loop.time()
            gate.set()
            await first
            _value, info = await second
            waited = loop.time() - released
            await b.stop()
        return waited, info.size

    waited, size = run(main())
    assert size == 1
    assert waited < 0.2  # not another 300 ms


def test_stop_lets_running_batches_answer() -> None:
    started = threading.Event()

    def slow(items: list[int]) -> list[int]:
        started.set()
        threading.Event().wait(0.2)
        return items

    async def main() -> int:
        with ThreadPoolExecutor(1) as pool:
            b: MicroBatcher[int, int] = MicroBatcher("t", slow, pool, max_batch=1,
                                                     max_delay_ms=0)
            b.start()
            task = asyncio.create_task(b.submit(5))
            while not started.is_set():
                await asyncio.sleep(0.01)
            await b.stop()
            value, _info = await task
        return value

    assert run(main()) == 5


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
