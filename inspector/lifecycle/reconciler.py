"""Bring the stations this node serves to the fleet's desired state, and say how it went.

The desired state is the current rows of `station_deployments` (written by a deploy, promote
or rollback on any node). Every `reconcile_s` seconds, at once after a change made here, and
on PostgreSQL at once after a change made on any node (LISTEN/NOTIFY,
inspector.store.changes), the reconciler compares it with what runs here; where they differ
it asks the deployer to converge: fetch the package if this node lacks it, verify it, load
and warm it up, then swap with the deployer's swap (frames already admitted finish on the
old model). A model that cannot be loaded leaves the station on the model it had; the reason
is reported in `node_stations` and retried after `retry_s` (or at once when the desired
model changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from inspector.core.errors import InspectorError
from inspector.core.names import ModelRef, utcnow
from inspector.lifecycle.deployer import Deployer
from inspector.store import deployments, nodes
from inspector.store.changes import ChangeListener
from inspector.store.db import database_unavailable
from inspector.store.nodes import StationOutcome

log = logging.getLogger(__name__)

MODES = ("active", "shadow")
Key = tuple[str, str]  # (station, mode)


class Reconciler:
    """One node's loop from the desired state to what it runs."""

    def __init__(self, deployer: Deployer) -> None:
        self.deployer = deployer
        self.settings = deployer.settings
        self.db = deployer.db
        #: Seconds before a model that failed to load is tried again (unless the desired
        #: model changes first).
        self.retry_s = max(30.0, 10 * self.settings.reconcile_s)
        #: The outcomes last written to the database, by (station, mode).
        self.outcomes: dict[Key, StationOutcome] = {}
        self._failed: dict[Key, tuple[str, float]] = {}
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Reconcile now (after a change made on this node)."""
        self._wake.set()

    async def run(self) -> None:
        """Reconcile for ever: every `reconcile_s` seconds or when poked (by this node's
        changes, and on PostgreSQL by any node's)."""
        listener = None
        if self.db.backend == "postgresql":
            loop = asyncio.get_running_loop()

            def heard(_station: str) -> None:
                with contextlib.suppress(RuntimeError):  # the loop closed at shutdown
                    loop.call_soon_threadsafe(self._wake.set)

            listener = ChangeListener(self.db, heard)
            listener.start()
        try:
            await self._loop()
        finally:
            if listener is not None:
                await asyncio.to_thread(listener.stop)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.reconcile_once()
            except Exception as exc:
                if database_unavailable(exc):
                    log.warning("reconcile skipped: the database is unavailable; will retry")
                else:
                    log.exception("reconcile failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.reconcile_s)

    async def reconcile_once(self) -> list[StationOutcome]:
        """One pass over the served stations; writes the outcomes that changed."""
        desired = await asyncio.to_thread(self._read_desired)
        stations = {st for st, _ in desired} | set(self.deployer.registry.stations)
        fresh: dict[Key, StationOutcome] = {}
        for station in sorted(s for s in stations if self.settings.serves(s)):
            for mode in MODES:
                outcome = await self._reconcile(station, mode, desired.get((station, mode)))
                if outcome is not None:
                    fresh[(station, mode)] = outcome
        changed = [o for k, o in fresh.items() if _differs(self.outcomes.get(k), o)]
        gone = [k for k in self.outcomes if k not in fresh]
        if changed or gone:
            await asyncio.to_thread(nodes.record_outcomes, self.db, self.settings.node_id,
                                    changed, gone)
            self.outcomes = fresh
        return list(fresh.values())

    def _read_desired(self) -> dict[Key, str]:
        return {(d.station, mode): str(ModelRef(d.model_name, d.model_version))
                for mode in MODES for d in deployments.current_deployments(self.db, mode)}

    def _running(self, station: str, mode: str) -> str | None:
        if mode == "shadow":
            return self.deployer.registry.shadows.get(station)
        return self.deployer.active_ref(station)

    async def _reconcile(self, station: str, mode: str, want: str | None
                         ) -> StationOutcome | None:
        running = self._running(station, mode)
        if want is None and (mode == "active" or running is None):
            # No deployment: the station keeps its configured model (settings), or has none.
            return None if running is None else self._outcome(station, mode, None, running)
        if want == running:
            self._failed.pop((station, mode), None)
            return self._outcome(station, mode, want, running)
        failed = self._failed.get((station, mode))
        if failed is not None and failed[0] == want and time.monotonic() < failed[1]:
            return self.outcomes.get((station, mode))
        try:
            running = await self.deployer.converge(station, mode, want)
        except Exception as exc:
            return self._failure(station, mode, want, exc)
        self._failed.pop((station, mode), None)
        log.info("station %s: now runs %s as %s (desired state)", station, running, mode)
        return self._outcome(station, mode, want, running)

    def _failure(self, station: str, mode: str, want: str | None, exc: Exception
                 ) -> StationOutcome:
        if database_unavailable(exc):
            raise exc
        known = isinstance(exc, InspectorError)
        reason = str(exc) if known else f"{type(exc).__name__}: {exc}"
        log.error("station %s: cannot run %s as %s, keeping %s: %s", station, want, mode,
                  self._running(station, mode), reason, exc_info=not known)
        self._failed[(station, mode)] = (want or "", time.monotonic() + self.retry_s)
        return self._outcome(station, mode, want, self._running(station, mode), reason)

    @staticmethod
    def _outcome(station: str, mode: str, want: str | None, running: str | None,
                 error: str | None = None) -> StationOutcome:
        return StationOutcome(station, mode, want, running, error is None, error, utcnow())


def _differs(old: StationOutcome | None, new: StationOutcome) -> bool:
    """True when a row must be written (the time alone changing is not news)."""
    return old is None or (old.desired, old.running, old.ok, old.error) != \
        (new.desired, new.running, new.ok, new.error)
