"""Drain the outbox to one destination: fetch due rows, deliver, settle, back off on failure.

One worker thread per destination. Delivery is at least once: a row leaves the outbox only
after the destination confirmed it, so a crash between sending and settling means a resend
(consumers de-duplicate by inspection id), never a loss.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from inspector.store import outbox
from inspector.store.db import Database
from inspector.store.outbox import Failure, PendingEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What happened to one row."""

    id: int
    ok: bool
    error: str | None
    #: False for errors that retrying cannot fix (a webhook answering 410, say).
    retryable: bool = True


class Destination(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def deliver(self, events: list[PendingEvent]) -> list[Outcome]: ...


def backoff_s(attempts: int, base: float = 0.5, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter: uniform in [base/2, min(cap, base * 2**attempts)]."""
    ceiling = min(cap, base * (2 ** min(attempts, 30)))
    return random.uniform(min(base / 2, ceiling), ceiling)


class OutboxWorker:
    """A thread that keeps one destination's outbox empty."""

    def __init__(
        self,
        db: Database,
        node: str,
        destination: Destination,
        *,
        max_backoff_s: float = 60.0,
        max_attempts: int = 0,
        batch: int = 100,
        on_backlog: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.db = db
        self.node = node
        self.destination = destination
        self.max_backoff_s = max_backoff_s
        self.max_attempts = max_attempts
        self.batch = batch
        self._on_backlog = on_backlog
        self._wake = threading.Event()
        self._make_due = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"outbox-{destination.name}", daemon=True
        )

    def start(self) -> None:
        self.destination.start()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self.destination.stop()

    def notify(self) -> None:
        """New rows were committed: look now rather than at the next poll."""
        self._wake.set()

    def retry_now(self) -> None:
        """The destination came back: make every waiting row due at once."""
        self._make_due.set()
        self._wake.set()

    def drain_once(self) -> tuple[int, int]:
        """One round: deliver up to `batch` due rows; returns (delivered, failed)."""
        if self._make_due.is_set():
            self._make_due.clear()
            n = outbox.make_due(self.db, self.node, self.destination.name)
            if n:
                log.info("%s: retrying %d waiting verdicts now", self.destination.name, n)
        events = outbox.fetch_due(self.db, self.node, self.destination.name, self.batch)
        if not events:
            return 0, 0
        by_id = {e.id: e for e in events}
        outcomes = self.destination.deliver(events)
        delivered = [o.id for o in outcomes if o.ok]
        failures = []
        for o in outcomes:
            if o.ok:
                continue
            attempts = by_id[o.id].attempts + 1
            give_up = not o.retryable or (self.max_attempts and attempts >= self.max_attempts)
            retry = None if give_up else backoff_s(attempts, cap=self.max_backoff_s)
            failures.append(Failure(o.id, retry, o.error or "unknown error"))
        outbox.settle(self.db, delivered, failures)
        if failures:
            log.debug("%s: %d deliveries failed (%s)", self.destination.name, len(failures),
                      failures[0].error)
        return len(delivered), len(failures)

    def _report_backlog(self) -> None:
        if self._on_backlog is None:
            return
        counts = outbox.backlog(self.db, self.node)
        name = self.destination.name
        self._on_backlog(name, counts.get((name, "pending"), 0), counts.get((name, "dead"), 0))

    def _run(self) -> None:
        idle_rounds = 0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                delivered, failed = self.drain_once()
            except Exception:
                log.exception("%s: outbox round failed; retrying in 1 s", self.destination.name)
                delivered, failed = 0, 1
            if delivered and not failed:
                idle_rounds = 0
                continue  # more may be waiting
            idle_rounds += 1
            if idle_rounds % 5 == 1:
                try:
                    self._report_backlog()
                except Exception as exc:
                    log.debug("backlog query failed: %s", exc)
            # Sleep until new rows are committed, the destination reconnects, or a retry is due.
            self._wake.wait(timeout=1.0 if not failed else 0.5)
