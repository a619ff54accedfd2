"""Desired-state change notifications on a private PostgreSQL cluster that is stopped and
started under the listener: notifications arrive only for committed changes, the listener
says once that it lost the connection, reconnects by itself and hears changes again."""

from __future__ import annotations

import logging
import queue
import time

import pytest

from inspector.core.names import ModelRef
from inspector.store import deployments
from inspector.store.changes import ChangeListener, notify
from inspector.store.db import Database
from tests.pg_cluster import PrivatePostgres

pytestmark = pytest.mark.slow


def next_heard(heard: queue.Queue[str], timeout: float = 20.0) -> str:
    return heard.get(timeout=timeout)


def test_listener_hears_commits_survives_a_database_restart_and_hears_again(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="inspector.store.changes")
    with PrivatePostgres() as pg:
        db = Database(pg.url)
        db.migrate()
        heard: queue.Queue[str] = queue.Queue()
        listener = ChangeListener(db, heard.put)
        listener.start()
        try:
            assert next_heard(heard) == ""  # connected: reconcile once
            deployments.apply(db, "press-1", "t", {"active": ModelRef("m", "1")})
            assert next_heard(heard) == "press-1"
            with pytest.raises(RuntimeError), db.session() as s:  # rolled back: never sent
                notify(s, "press-2")
                raise RuntimeError("abort")
            pg.stop("immediate")
            deadline = time.monotonic() + 20
            while listener.connected.is_set() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not listener.connected.is_set()
            time.sleep(2.5)  # a few failed reconnects: said once, not per try
            pg.start()
            assert next_heard(heard, 60) == ""  # reconnected: reconcile once
            db.dispose()  # the pool's connections died with the server
            deployments.apply(db, "press-3", "t", {"active": ModelRef("m", "2")})
            assert next_heard(heard) == "press-3"
            assert heard.empty()  # press-2's rolled-back change was never heard
        finally:
            listener.stop()
            db.dispose()
    lost = [r for r in caplog.records if "no connection" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.WARNING
    assert any("listening again" in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records)
