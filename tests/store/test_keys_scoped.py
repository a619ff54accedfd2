"""Store-level edges (SQLite and PostgreSQL): station-scoped keys, manifest cells a spreadsheet
would run as formulas, and which database errors count as "the database is unavailable"."""

from __future__ import annotations

import csv
import socket
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from inspector.store import keys
from inspector.store.artifacts import ArtifactStore
from inspector.store.db import Database, database_unavailable
from inspector.store.export import ExportQuery, csv_cell, write_export
from inspector.store.inspections import add_review, new_id, record_batch
from inspector.store.reviews import QueueQuery, queue_page
from tests.server.harness import free_port
from tests.store.test_store import make_record


def test_scoped_key_round_trip(db: Database) -> None:
    info, key = keys.create_key(db, "camera", "cam-press",
                                stations=["press-1", "press-2", "press-1"])
    assert info.stations == ("press-1", "press-2")
    verified = keys.verify_key(db, key)
    assert verified is not None and verified.stations == ("press-1", "press-2")
    _, open_key = keys.create_key(db, "camera", "cam-any")
    found = keys.verify_key(db, open_key)
    assert found is not None and found.stations is None
    listed = {k.name: k.stations for k in keys.list_keys(db)}
    assert listed == {"cam-press": ("press-1", "press-2"), "cam-any": None}


@pytest.mark.parametrize("bad", ["a/b", "press 1", "", "x" * 65, "press-1\x00"])
def test_scoped_key_refuses_unsafe_station_names(db: Database, bad: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        keys.create_key(db, "camera", stations=["press-1", bad])
    assert keys.list_keys(db) == []


def test_only_camera_keys_take_stations(db: Database) -> None:
    with pytest.raises(ValueError, match="only camera keys"):
        keys.create_key(db, "reviewer", stations=["press-1"])


def test_manifest_cells_cannot_run_as_formulas(db: Database, tmp_path: Path) -> None:
    art = ArtifactStore(tmp_path / "artifacts")
    hostile = ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    recs = []
    for part in [*hostile, "A-17"]:
        rec = make_record(verdict="fail", id=new_id(), part_id=part)
        saved = art.save(rec.id, rec.created_at, b"frame", "PNG", b"heat")
        recs.append(replace(rec, image_key=saved.image_key, heatmap_key=saved.heatmap_key))
    record_batch(db, recs, [])
    for rec in recs:
        add_review(db, rec.id, label="good", reviewer="=cmd|' /C calc'!A0")
    out = tmp_path / "export"
    write_export(db, art, ExportQuery(since=datetime.now(UTC) - timedelta(days=1),
                                      sample_passes=0), out)
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    parts = {row["part_id"] for row in rows}
    assert parts == {"'" + p for p in hostile} | {"A-17"}
    assert {row["reviewer"] for row in rows} == {"'=cmd|' /C calc'!A0"}
    assert csv_cell(-0.5) == -0.5  # numbers are numbers, not formulas


def test_queue_page_beyond_any_integer_is_an_empty_page(db: Database) -> None:
    rows, total = queue_page(db, QueueQuery(), 99_999_999_999_999_999_999, 25)
    assert rows == [] and total == 0


def test_unavailable_means_unreachable_not_refused(db: Database) -> None:
    rec = make_record()
    record_batch(db, [rec], [])
    with pytest.raises(IntegrityError) as refused:
        record_batch(db, [rec], [])  # same id twice: the database says no, it is not down
    assert not database_unavailable(refused.value)
    port = free_port()  # nothing listens here
    dead = Database(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test")
    try:
        with pytest.raises(OperationalError) as down, dead.engine.connect():
            pass
    finally:
        dead.dispose()
    assert database_unavailable(down.value)


@pytest.mark.slow
def test_postgres_connect_gives_up_on_a_silent_server() -> None:
    """A host that accepts TCP but never answers: /readyz's ping fails in ~5 s, not minutes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes handshakes; nobody ever answers
        port = listener.getsockname()[1]
        db = Database(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test")
        done: list[float] = []

        def ping() -> None:
            t0 = time.perf_counter()
            assert db.ping() is False
            done.append(time.perf_counter() - t0)

        worker = threading.Thread(target=ping, daemon=True)
        worker.start()
        worker.join(timeout=20)
        db.dispose()
    assert done, "ping still hanging after 20 s"
    assert done[0] < 9.0, f"ping took {done[0]:.1f} s"


def test_huge_ids_are_valid_python_but_bounded_in_sql(db: Database) -> None:
    """The bound the API declares (2**63 - 1) is what both databases hold."""
    from inspector.server.routes.reviews import MAX_ID

    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT :v"), {"v": MAX_ID}).scalar() == MAX_ID
