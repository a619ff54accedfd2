"""Desired-state changes pushed to every node at once, on PostgreSQL (LISTEN/NOTIFY).

A deploy, promote or rollback writes `station_deployments` and, in the same transaction,
`pg_notify(CHANNEL, station)`: PostgreSQL delivers it to every listening connection when (and
only if) the transaction commits. Each node's reconciler keeps one connection listening and
reconciles on a notification, so a change reaches the fleet in milliseconds; its `reconcile_s`
poll stays as the fallback (a notification sent while a node was disconnected is lost, so
after every (re)connect the node reconciles once anyway). SQLite (one node) needs none of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from inspector.store.db import Database

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

CHANNEL = "inspector_desired_state"
#: Seconds without any traffic after which the listening connection is checked with a query
#: (a half-open connection would otherwise wait for ever).
KEEPALIVE_S = 30.0
MAX_BACKOFF_S = 30.0


def notify(session: Session, station: str) -> None:
    """Queue a change notification in `session`'s transaction (PostgreSQL only; sent on
    commit, dropped on rollback)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, :station)"),
                        {"channel": CHANNEL, "station": station[:1000]})


class ChangeListener:
    """A thread holding one LISTEN connection; `on_change(station)` runs in that thread for
    every notification, and with "" after each (re)connect (changes may have been missed)."""

    def __init__(self, db: Database, on_change: Callable[[str], None]) -> None:
        if db.backend != "postgresql":
            raise ValueError("change notifications need PostgreSQL")
        self.db = db
        self.on_change = on_change
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="desired-state-listener",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        # The engine's own connection arguments: host, database, options (search_path),
        # connect_timeout.
        args, kwargs = self.db.engine.dialect.create_connect_args(self.db.engine.url)
        return psycopg.connect(*args, **kwargs, autocommit=True)

    def _run(self) -> None:
        import psycopg

        backoff, down_since = 1.0, None
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if down_since is not None:
                        log.info("change notifications: listening again after %.0f s",
                                 time.monotonic() - down_since)
                    backoff, down_since = 1.0, None
                    self.connected.set()
                    self.on_change("")
                    self._listen(conn)
            except psycopg.Error as exc:
                self.connected.clear()
                if self._stop.is_set():
                    return
                if down_since is None:
                    down_since = time.monotonic()
                    reason = str(exc).strip().splitlines()
                    log.warning("change notifications: no connection (%s: %s); polling "
                                "meanwhile, reconnecting", type(exc).__name__,
                                reason[0] if reason else "")
                self._stop.wait(backoff)
                backoff = min(MAX_BACKOFF_S, 2 * backoff)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        quiet_since = time.monotonic()
        while not self._stop.is_set():
            got = False
            for note in conn.notifies(timeout=1.0, stop_after=1):
                got = True
                self.on_change(note.payload)
            now = time.monotonic()
            if got:
                quiet_since = now
            elif now - quiet_since > KEEPALIVE_S:
                conn.execute("SELECT 1")  # raises on a dead connection
                quiet_since = now
