"""Records, reviews, keys, outbox and artifacts on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, update

from inspector.publish.messages import verdict_message
from inspector.store import deployments, keys, outbox
from inspector.store.artifacts import ArtifactStore
from inspector.store.db import Database, schema_is_current
from inspector.store.inspections import (
    InspectionQuery,
    NewInspection,
    add_review,
    get_inspection,
    list_inspections,
    new_id,
    record_batch,
)
from inspector.store.models import Base, Inspection


def make_record(station: str = "s1", verdict: str = "pass", **kw: object) -> NewInspection:
    base = NewInspection(
        id=new_id(), created_at=datetime.now(UTC), node="n1", line="l1", station=station,
        part_id="p", model_name="tiny", model_version="1", score=0.1, threshold=0.5,
        verdict=verdict, label=None, frame_width=64, frame_height=48, queue_ms=1.0,
        decode_ms=1.0, inference_ms=1.0, total_ms=3.0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_migrations_match_the_models(db: Database) -> None:
    assert schema_is_current(db.engine)
    db.migrate()  # idempotent
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_record_batch_writes_inspections_and_outbox(db: Database) -> None:
    items = [make_record(verdict="fail" if i % 2 else "pass") for i in range(6)]
    written = record_batch(db, items, ["mqtt", "webhook:erp"], verdict_message)
    assert sorted(written) == ["mqtt", "webhook:erp"]
    assert [e.inspection_id for e in written["webhook:erp"]] == [i.id for i in items]
    assert len({e.id for evs in written.values() for e in evs}) == 12
    row = get_inspection(db, items[1].id)
    assert row is not None and row.verdict == "fail" and row.created_at.tzinfo is not None
    due = outbox.fetch_due(db, "n1", "mqtt")
    assert [e.inspection_id for e in due] == [i.id for i in items]
    assert due == written["mqtt"]  # what the publishers are handed is what the table holds
    event = json.loads(due[0].payload)
    assert event["id"] == items[0].id and due[0].topic == "inspector/l1/s1/verdict"
    assert outbox.fetch_due(db, "other-node", "mqtt") == []


def test_outbox_settle_backoff_and_make_due(db: Database) -> None:
    record_batch(db, [make_record() for _ in range(3)], ["mqtt"], verdict_message)
    a, b, c = outbox.fetch_due(db, "n1", "mqtt")
    outbox.settle(db, [a.id], [outbox.Failure(b.id, 60.0, "down"),
                               outbox.Failure(c.id, None, "gone")])
    assert outbox.fetch_due(db, "n1", "mqtt") == []  # b waits, c is dead
    assert outbox.backlog(db, "n1") == {("mqtt", "pending"): 1, ("mqtt", "dead"): 1}
    assert outbox.make_due(db, "n1", "mqtt") == 1
    (again,) = outbox.fetch_due(db, "n1", "mqtt")
    assert again.id == b.id and again.attempts == 1


def test_list_filters_and_pages(db: Database) -> None:
    old = datetime.now(UTC) - timedelta(days=2)
    items = [make_record(station="a", verdict="fail"), make_record(station="b"),
             make_record(station="a", created_at=old)]
    items = [replace(it, id=f"{i:012x}" + it.id[12:]) for i, it in enumerate(items, 1)]
    record_batch(db, items, [])
    rows, cursor = list_inspections(db, InspectionQuery(station="a"))
    assert [r.id for r in rows] == [items[2].id, items[0].id] and cursor is None
    rows, _ = list_inspections(db, InspectionQuery(verdict="fail"))
    assert [r.id for r in rows] == [items[0].id]
    since = datetime.now(UTC) - timedelta(days=1)
    rows, _ = list_inspections(db, InspectionQuery(since=since))
    assert {r.id for r in rows} == {items[0].id, items[1].id}
    rows, cursor = list_inspections(db, InspectionQuery(limit=2))
    assert len(rows) == 2 and cursor == rows[-1].id
    rest, end = list_inspections(db, InspectionQuery(limit=2, before=cursor))
    assert [r.id for r in rest] == [items[0].id] and end is None


def test_reviews_update_state(db: Database) -> None:
    rec = make_record(verdict="fail")
    record_batch(db, [rec], [])
    assert add_review(db, "0" * 32, label="good", reviewer="r") is None
    review = add_review(db, rec.id, label="defect", defect_type="crack", reviewer="qa-1")
    assert review is not None and review.reviewer == "qa-1"
    rows, _ = list_inspections(db, InspectionQuery(review="defect"))
    assert [r.id for r in rows] == [rec.id]
    add_review(db, rec.id, label="good", reviewer="qa-2")
    rows, _ = list_inspections(db, InspectionQuery(review="reviewed"))
    assert rows[0].review_state == "good"


def test_keys_are_hashed_and_revocable(db: Database) -> None:
    info, key = keys.create_key(db, "reviewer", "qa")
    assert keys.verify_key(db, key) == info
    assert keys.verify_key(db, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert keys.verify_key(db, "Bearer nonsense") is None
    with db.session() as s:
        stored = s.execute(select(keys.ApiKey.key_hash, keys.ApiKey.prefix)).one()
    assert key not in stored and stored.prefix == info.prefix
    assert keys.revoke_key(db, info.prefix) and keys.verify_key(db, key) is None
    with pytest.raises(ValueError, match="role"):
        keys.create_key(db, "root")


def test_deployments_keep_history(db: Database) -> None:
    deployments.register_model_version(db, name="m", version="1", kind="anomaly",
                                       sha256="a" * 64, card_json="{}", path="/m/1")
    deployments.register_model_version(db, name="m", version="1", kind="anomaly",
                                       sha256="a" * 64, card_json="{}", path="/m/1")
    for version in ("1", "2"):
        deployments.deploy(db, deployments.Deployment("s1", "active", "m", version, "admin"))
    (current,) = deployments.current_deployments(db)
    assert current.model_version == "2"


def test_artifacts_paths_and_retention(db: Database, tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")
    with pytest.raises(ValueError):
        store.save("../x", datetime.now(UTC), b"x", "PNG", None)
    now = datetime.now(UTC)
    recs = []
    for i, age_days in enumerate([40, 3, 2, 1]):
        rec = make_record(created_at=now - timedelta(days=age_days))
        rec = replace(rec, id=f"{i + 1:012x}" + rec.id[12:])
        saved = store.save(rec.id, rec.created_at, b"i" * 1000, "JPEG", b"h" * 500)
        recs.append(replace(rec, image_key=saved.image_key, heatmap_key=saved.heatmap_key,
                            artifact_bytes=saved.nbytes))
    assert recs[0].image_key and recs[0].image_key.endswith(".jpg")
    record_batch(db, recs, [])
    result = store.enforce_retention(db, timedelta(days=30), max_bytes=2000)
    assert result.removed_records == 3  # 40 days old by age, then the 2 oldest by size
    kept = get_inspection(db, recs[3].id)
    assert kept is not None and kept.image_key and store.path(kept.image_key).is_file()
    gone = get_inspection(db, recs[0].id)
    assert gone is not None and gone.image_key is None  # the record itself stays
    assert not any(store.root.rglob(f"{recs[0].id}*"))


def test_shared_copies_expire_by_age_whichever_node_made_them(
        db: Database, tmp_path: Path) -> None:
    """A node that left the fleet never runs its own retention again: any node's expiry
    removes its old shared copies (and only the old ones, of every node)."""
    from inspector.store import artifact_blobs
    from inspector.store.models import ArtifactBlob

    now = datetime.now(UTC)
    recs = []
    for node, age_days in (("gone", 40), ("gone", 2), ("here", 35), ("here", 1)):
        store = ArtifactStore(tmp_path / node)
        rec = make_record(verdict="fail", node=node, created_at=now - timedelta(days=age_days))
        saved = store.save(rec.id, rec.created_at, b"i" * 100, "JPEG", b"h" * 50)
        rec = replace(rec, image_key=saved.image_key, heatmap_key=saved.heatmap_key,
                      artifact_bytes=saved.nbytes)
        record_batch(db, [rec], [])
        assert artifact_blobs.share(db, store, [rec]) == 2
        recs.append(rec)
    assert artifact_blobs.expire(db, timedelta(days=30), chunk=1) == 4  # several chunks
    with db.session() as s:
        left = set(s.scalars(select(ArtifactBlob.inspection_id)))
    assert left == {recs[1].id, recs[3].id}
    assert artifact_blobs.read(db, recs[1].image_key or "") == b"i" * 100
    assert artifact_blobs.expire(db, timedelta(days=30)) == 0


def test_artifacts_saved_for_a_group_flush(tmp_path: Path) -> None:
    """The server writes without per-file fsync and syncs the file system once per commit."""
    import sys

    from inspector.store import artifacts

    store = ArtifactStore(tmp_path / "artifacts")
    rec = make_record()
    saved = store.save(rec.id, rec.created_at, b"frame", "PNG", b"heat", durable=False)
    store.flush()
    assert store.path(saved.image_key).read_bytes() == b"frame"
    assert saved.heatmap_key and store.path(saved.heatmap_key).read_bytes() == b"heat"
    assert not list(store.root.rglob("*.tmp"))
    if sys.platform.startswith("linux"):
        assert artifacts._SYNCFS is not None  # one syncfs, not a whole-machine sync


def test_sqlite_is_wal_and_durable(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_ids_are_time_ordered() -> None:
    a = new_id()
    time.sleep(0.002)
    b = new_id()
    assert a < b and len(a) == 32 and int(a, 16) >= 0


def test_utc_column_refuses_naive_datetimes(db: Database) -> None:
    record_batch(db, [make_record()], [])
    with pytest.raises(Exception, match="naive"), db.session() as s:
        s.execute(update(Inspection).values(created_at=datetime.now()))
