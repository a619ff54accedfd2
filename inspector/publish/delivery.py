"""Drain the outbox to one destination: deliver, settle, back off on failure.

One worker thread per destination. Delivery is at least once: a row leaves the outbox only
after the destination confirmed it, so a crash between sending and settling means a resend
(consumers de-duplicate by inspection id), never a loss.

Two ways in. Rows just committed are handed over in memory (`offer`), so the common case costs
no query: send, then delete in batches. The table is read (`fetch_due`) at start-up, after a
failure or a reconnect, when the memory queue overflowed, and every few seconds for rows whose
retry came due; while it is being caught up, rows offered in memory are skipped (the scan finds
them, since they were committed before they were offered).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from inspector.store import outbox
from inspector.store.db import Database, database_unavailable
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
        settle_interval_s: float = 0.5,
        scan_interval_s: float = 5.0,
        memory_limit: int = 10_000,
    ) -> None:
        self.db = db
        self.node = node
        self.destination = destination
        self.max_backoff_s = max_backoff_s
        self.max_attempts = max_attempts
        self.batch = batch
        self.settle_interval_s = settle_interval_s
        self.scan_interval_s = scan_interval_s
        self._on_backlog = on_backlog
        self._wake = threading.Event()
        self._make_due = threading.Event()
        self._stop = threading.Event()
        #: Rows committed and offered in memory, oldest first (ids only grow: one committer).
        self._fresh: deque[PendingEvent] = deque()
        self._memory_limit = memory_limit
        #: Read the table before trusting memory again (start-up, failures, overflow).
        self._scan_needed = True
        #: When the database became unreachable for this worker (None: reachable).
        self._db_down_since: float | None = None
        self._next_scan = 0.0
        #: Highest row id handed to the destination from a scan; memory rows at or below it
        #: were already sent by that scan.
        self._scanned_upto = 0
        #: Delivered rows whose delete is still to be written (batched).
        self._delivered: list[int] = []
        self._last_settle = time.monotonic()
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
        if not self._thread.is_alive():
            try:
                self._flush_settled()
            except Exception as exc:  # the rows stay and are sent again after a restart
                log.warning("%s: could not settle delivered rows at shutdown: %s",
                            self.destination.name, exc)
        self.destination.stop()

    def offer(self, events: list[PendingEvent]) -> None:
        """Rows just committed for this destination (thread-safe); sent without a query."""
        if len(self._fresh) + len(events) > self._memory_limit:
            self._scan_needed = True  # the table has them all; read it instead
        else:
            self._fresh.extend(events)
        self._wake.set()

    def retry_now(self) -> None:
        """The destination came back: make every waiting row due at once."""
        self._make_due.set()
        self._wake.set()

    def _take(self) -> list[PendingEvent]:
        """The next rows to send: from the table when a scan is due, else from memory."""
        now = time.monotonic()
        if self._make_due.is_set():
            self._make_due.clear()
            self._flush_settled()
            n = outbox.make_due(self.db, self.node, self.destination.name)
            if n:
                log.info("%s: retrying %d waiting verdicts now", self.destination.name, n)
            self._scan_needed = True
        if self._scan_needed or now >= self._next_scan:
            self._flush_settled()  # a scan must not see rows already delivered
            events = outbox.fetch_due(self.db, self.node, self.destination.name, self.batch)
            self._next_scan = now + self.scan_interval_s
            # Caught up once a scan comes back short; then memory can be trusted again.
            self._scan_needed = len(events) >= self.batch
            if events:
                self._scanned_upto = max(self._scanned_upto, max(e.id for e in events))
            if events or self._scan_needed:
                return events
        fresh = self._fresh
        out: list[PendingEvent] = []
        while fresh and len(out) < self.batch:
            e = fresh.popleft()
            if e.id > self._scanned_upto:
                out.append(e)
        return out

    def drain_once(self, settle: bool = True) -> tuple[int, int]:
        """One round: deliver up to `batch` rows; returns (delivered, failed). With `settle`,
        delivered rows are deleted before returning; otherwise deletes are batched."""
        events = self._take()
        if not events:
            if settle:
                self._flush_settled()
            return 0, 0
        by_id = {e.id: e for e in events}
        outcomes = self.destination.deliver(events)
        self._delivered += [o.id for o in outcomes if o.ok]
        failures = []
        for o in outcomes:
            if o.ok:
                continue
            attempts = by_id[o.id].attempts + 1
            give_up = not o.retryable or (self.max_attempts and attempts >= self.max_attempts)
            retry = None if give_up else backoff_s(attempts, cap=self.max_backoff_s)
            failures.append(Failure(o.id, retry, o.error or "unknown error"))
        if failures:
            self._flush_settled(failures)
            self._scan_needed = True  # memory rows may now be out of order with retries
            self._fresh.clear()  # committed, so the scan will find them
            log.debug("%s: %d deliveries failed (%s)", self.destination.name, len(failures),
                      failures[0].error)
        elif settle or len(self._delivered) >= 10 * self.batch or (
                time.monotonic() - self._last_settle >= self.settle_interval_s):
            self._flush_settled()
        return len(outcomes) - len(failures), len(failures)

    def _flush_settled(self, failures: list[Failure] | None = None) -> None:
        """Write the batched deletes (and any failures) in one transaction."""
        delivered, self._delivered = self._delivered, []
        self._last_settle = time.monotonic()
        if delivered or failures:
            try:
                outbox.settle(self.db, delivered, failures or [])
            except Exception:
                self._delivered = delivered + self._delivered  # try again next round
                raise

    def _report_backlog(self) -> None:
        if self._on_backlog is None:
            return
        counts = outbox.backlog(self.db, self.node)
        name = self.destination.name
        self._on_backlog(name, counts.get((name, "pending"), 0), counts.get((name, "dead"), 0))

    def _round_failed(self, exc: Exception) -> None:
        """Log a failed outbox round: a database outage once (one line, no traceback; the
        rows wait in the database and go out when it is back), anything else in full."""
        if not database_unavailable(exc):
            log.exception("%s: outbox round failed; retrying in 1 s", self.destination.name)
            return
        if self._db_down_since is None:
            self._db_down_since = time.monotonic()
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            log.warning("%s: database unavailable (%s: %s); deliveries resume when it is back",
                        self.destination.name, type(exc).__name__, reason[0] if reason else "")

    def _run(self) -> None:
        next_report = 0.0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                delivered, failed = self.drain_once(settle=False)
            except Exception as exc:
                self._round_failed(exc)
                self._scan_needed = True
                delivered, failed = 0, 1
            else:
                if self._db_down_since is not None:
                    log.info("%s: database reachable again after %.0f s; delivering the "
                             "backlog", self.destination.name,
                             time.monotonic() - self._db_down_since)
                    self._db_down_since = None
            if delivered and not failed:
                continue  # more may be waiting
            timeout = 1.0 if not failed else 0.5
            try:
                now = time.monotonic()
                if self._delivered:  # deletes wait at most settle_interval_s, then go together
                    due = self._last_settle + self.settle_interval_s
                    if now >= due:
                        self._flush_settled()
                    else:
                        timeout = min(timeout, due - now)
                if now >= next_report:
                    next_report = now + 2.0
                    self._report_backlog()
            except Exception as exc:
                log.debug("outbox settle or backlog query failed: %s", exc)
            # Sleep until new rows are committed, the destination reconnects, a retry or the
            # batched deletes are due.
            self._wake.wait(timeout=timeout)
