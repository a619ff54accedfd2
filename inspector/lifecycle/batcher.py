"""Dynamic micro-batching on the event loop, with the work itself in executor threads.

Concurrent submissions are collected into one call of `fn(list_of_items)`: a batch starts as
soon as `max_batch` items wait, or `max_delay_ms` after the first one. At most `concurrency`
batches run at a time per batcher (the executor needs that many threads), so while they are in
flight the next one fills up by itself: under load batches grow without any added delay. The
same class batches model inference (one per model, several calls at once on a CPU: see
`inspector.core.runtime.plan_threads`) and database commits (one at a time: group commit, many
verdicts in one transaction).

Admission (how many items may be in flight) is bounded by `Admission`, and the memory they
hold by `MemoryBudget`, so a flood of frames (or a few huge ones) answers 503 instead of growing
memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from inspector.lifecycle.errors import PayloadTooLargeError, ServerBusyError

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class BatchInfo:
    """How an item was processed: time waiting, the batch's run time, and its size."""

    queue_ms: float
    run_ms: float
    size: int


@dataclass
class _Pending(Generic[T, R]):
    value: T
    future: asyncio.Future[tuple[R, BatchInfo]]
    enqueued: float


class MicroBatcher(Generic[T, R]):
    """Collects concurrent `submit` calls into batches for `fn`, run on `executor`."""

    def __init__(
        self,
        name: str,
        fn: Callable[[list[T]], list[R]],
        executor: Executor,
        *,
        max_batch: int,
        max_delay_ms: float,
        concurrency: int = 1,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.name = name
        self._fn = fn
        self._executor = executor
        self.max_batch = max(1, max_batch)
        self.max_delay_s = max(0.0, max_delay_ms) / 1000.0
        self.concurrency = max(1, concurrency)
        self._on_batch = on_batch
        #: Batches running now (at most `concurrency`).
        self._running: set[asyncio.Task[None]] = set()
        self._items: deque[_Pending[T, R]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Items waiting for a batch (not counting the one running)."""
        return len(self._items)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop collecting; items still waiting fail with ServerBusyError."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._running:  # batches already handed to the executor finish and answer
            await asyncio.gather(*self._running, return_exceptions=True)
        while self._items:
            item = self._items.popleft()
            if not item.future.done():
                item.future.set_exception(ServerBusyError("server is shutting down"))

    async def submit(self, value: T) -> tuple[R, BatchInfo]:
        """Queue one item and wait for its result (exceptions from `fn` propagate)."""
        if self._task is None:
            raise RuntimeError(f"batcher {self.name} is not started")
        future: asyncio.Future[tuple[R, BatchInfo]] = asyncio.get_running_loop().create_future()
        self._items.append(_Pending(value, future, time.perf_counter()))
        self._wakeup.set()
        return await future

    async def _gather(self) -> list[_Pending[T, R]]:
        while not self._items:
            self._wakeup.clear()
            await self._wakeup.wait()
        idle = max(1, self.concurrency - len(self._running))  # free slots, this one included
        # Waiting to fill a batch only pays on the last free slot: while another slot is idle,
        # the next frame can start there at once.
        if idle == 1 and len(self._items) < self.max_batch and self.max_delay_s > 0:
            # The delay counts from the first item's arrival, not from now: items that queued
            # while every slot was busy have waited long enough already.
            deadline = self._items[0].enqueued + self.max_delay_s
            while len(self._items) < self.max_batch:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
        # Share what waits between the idle slots (this one included): 8 frames arriving
        # together on 2 slots run as 4 + 4 side by side, not 8 on one slot while the other
        # idles.
        n = min(self.max_batch, -(-len(self._items) // idle))
        return [self._items.popleft() for _ in range(n)]

    async def _run(self) -> None:
        free = asyncio.Semaphore(self.concurrency)

        def done(task: asyncio.Task[None]) -> None:
            self._running.discard(task)
            free.release()

        while True:
            await free.acquire()  # collect the next batch only when it can start at once
            batch = await self._gather()
            live = [p for p in batch if not p.future.done()]  # caller may have gone away
            if not live:
                free.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run_batch(live))
            self._running.add(task)
            task.add_done_callback(done)

    async def _run_batch(self, live: list[_Pending[T, R]]) -> None:
        start = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._fn, [p.value for p in live]
            )
        except Exception as exc:
            for p in live:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        run_ms = (time.perf_counter() - start) * 1000.0
        if self._on_batch is not None:
            self._on_batch(len(live), run_ms)
        for p, result in zip(live, results, strict=True):
            if not p.future.done():
                info = BatchInfo((start - p.enqueued) * 1000.0, run_ms, len(live))
                p.future.set_result((result, info))


class Admission:
    """A non-blocking bound on items in flight; over the limit raises ServerBusyError (503)."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.in_flight = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the duration of the block (event-loop only, so no lock)."""
        if self.in_flight >= self.limit:
            raise ServerBusyError(
                f"{self.name}: {self.in_flight} frames already queued (limit {self.limit})",
                hint="retry after the Retry-After delay, or raise queue_size / add capacity",
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


class Reservation:
    """Bytes one frame holds in a `MemoryBudget`; grows as more is known about the frame."""

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
        self.nbytes = 0

    def grow_to(self, nbytes: int) -> None:
        """Hold `nbytes` in all (never less than now); ServerBusyError when that does not fit
        now, PayloadTooLargeError when it exceeds the whole budget."""
        extra = nbytes - self.nbytes
        if extra <= 0:
            return
        b = self._budget
        if nbytes > b.limit:
            raise PayloadTooLargeError(
                f"this frame needs about {nbytes / 2**20:.0f} MiB while in flight, more than "
                f"the whole budget of {b.limit / 2**20:.0f} MiB",
                hint="send smaller frames (fewer pixels), or raise max_inflight_bytes in "
                     "settings",
            )
        if b.in_use + extra > b.limit:
            raise ServerBusyError(
                f"frames in flight hold {b.in_use / 2**20:.0f} MiB of the "
                f"{b.limit / 2**20:.0f} MiB budget; this one needs {nbytes / 2**20:.0f} MiB",
                hint="retry after the Retry-After delay, or raise max_inflight_bytes",
            )
        b.in_use += extra
        self.nbytes = nbytes

    def release(self) -> None:
        self._budget.in_use -= self.nbytes
        self.nbytes = 0


class MemoryBudget:
    """A non-blocking bound on the bytes frames in flight hold, shared by every model of the
    process (beside the per-model count bound, `Admission`). Event-loop only, so no lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    @contextmanager
    def reserve(self, nbytes: int = 0) -> Iterator[Reservation]:
        """Hold `nbytes` (grow it later with `Reservation.grow_to`) for the block."""
        held = Reservation(self)
        held.grow_to(nbytes)
        try:
            yield held
        finally:
            held.release()
