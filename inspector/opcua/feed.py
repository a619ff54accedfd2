"""Committed verdicts handed from the commit thread to the OPC UA server's loop, never waiting.

The commit thread calls `VerdictFeed.offer` after each group commit; it only counts, appends
to a bounded backlog under a lock held for microseconds, and wakes the OPC UA loop with
`call_soon_threadsafe`. However slow the OPC UA side or its clients are, a verdict's commit
never waits for them. When the backlog is full the oldest station updates are dropped (the
variables hold the latest state, and every update carries the running counts, so a later
update still sets PassCount and FailCount right) and a warning says how many.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from inspector.core.names import ModelRef
from inspector.store.inspections import NewInspection

log = logging.getLogger(__name__)

#: Station updates waiting for the OPC UA loop at most; beyond it the oldest are dropped.
MAX_BACKLOG = 50_000


@dataclass(frozen=True)
class StationUpdate:
    """One committed verdict as the OPC UA variables of its station show it."""

    station: str
    inspection_id: str
    verdict: str
    score: float
    threshold: float
    part_id: str
    model: str
    time: datetime
    pass_count: int
    fail_count: int


class VerdictFeed:
    """Counts verdicts per station since start and queues them for the OPC UA loop."""

    def __init__(self, max_backlog: int = MAX_BACKLOG) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int]] = {}
        self._backlog: deque[StationUpdate] = deque()
        self._max_backlog = max_backlog
        self._wake: Callable[[], object] | None = None
        self._dropped = 0

    def attach(self, wake: Callable[[], object] | None) -> None:
        """Who to wake when updates arrive (None: nobody; updates still queue, bounded)."""
        with self._lock:
            self._wake = wake

    def offer(self, committed: Sequence[NewInspection]) -> None:
        """A verdict listener (commit thread): queue the verdicts just committed, in order."""
        with self._lock:
            for item in committed:
                self._backlog.append(self._update(item))
            over = len(self._backlog) - self._max_backlog
            for _ in range(max(over, 0)):
                self._backlog.popleft()
            self._dropped += max(over, 0)
            wake = self._wake
        if wake is not None:
            with contextlib.suppress(RuntimeError):  # the OPC UA loop has just closed
                wake()

    def _update(self, item: NewInspection) -> StationUpdate:
        passed, failed = self._counts.get(item.station, (0, 0))
        if item.verdict == "pass":
            passed += 1
        else:
            failed += 1
        self._counts[item.station] = (passed, failed)
        return StationUpdate(
            station=item.station, inspection_id=item.id, verdict=item.verdict,
            score=item.score, threshold=item.threshold, part_id=item.part_id or "",
            model=str(ModelRef(item.model_name, item.model_version)), time=item.created_at,
            pass_count=passed, fail_count=failed,
        )

    def drain(self) -> list[StationUpdate]:
        """Everything queued, oldest first; logs how many were dropped since the last drain."""
        with self._lock:
            out = list(self._backlog)
            self._backlog.clear()
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("OPC UA fell behind: %d verdict update(s) skipped (the variables show "
                        "the latest verdicts and counts)", dropped)
        return out
