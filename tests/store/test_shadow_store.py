"""Shadow results and deployment history in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from inspector.core.names import ModelRef
from inspector.store import deployments
from inspector.store.db import Database
from inspector.store.inspections import add_review, record_batch
from inspector.store.shadow import (
    NewShadowResult,
    latest_shadow_model,
    record_shadow_batch,
    shadow_rows,
)
from tests.store.test_store import make_record


def result(inspection_id: str, version: str, score: float, when: datetime) -> NewShadowResult:
    return NewShadowResult(
        inspection_id=inspection_id, station="s1", created_at=when, active_name="m",
        active_version="1", active_score=0.4, active_verdict="pass", shadow_name="m",
        shadow_version=version, shadow_score=score, shadow_threshold=0.5,
        shadow_verdict="fail" if score >= 0.5 else "pass", shadow_label=None, shadow_ms=1.5)


def test_shadow_results_round_trip_with_review_state(db: Database) -> None:
    now = datetime.now(UTC)
    recs = [make_record() for _ in range(4)]
    record_batch(db, recs, [])
    add_review(db, recs[0].id, label="defect", defect_type="dent", reviewer="qa")
    add_review(db, recs[0].id, label="good", reviewer="qa")  # the latest label counts
    add_review(db, recs[1].id, label="defect", defect_type="scratch", reviewer="qa")
    add_review(db, recs[1].id, label="defect", defect_type="spot", reviewer="qa")
    record_shadow_batch(db, [result(r.id, "2", 0.2 * i, now - timedelta(minutes=10 - i))
                             for i, r in enumerate(recs[:3])])
    record_shadow_batch(db, [result(recs[3].id, "3", 0.9, now)])
    rows = shadow_rows(db, "s1", "m", "2")
    assert [r.shadow_score for r in rows] == [0.0, 0.2, 0.4]  # oldest first
    assert [r.review_state for r in rows] == ["good", "defect", "unreviewed"]
    assert [r.defect_type for r in rows] == [None, "spot", None]
    assert rows[0].active_ref == "m:1"
    assert len(shadow_rows(db, "s1", "m", "2", since=now - timedelta(minutes=9))) == 2
    assert len(shadow_rows(db, "s1", "m", "2", limit=1)) == 1
    assert shadow_rows(db, "s2", "m", "2") == []
    assert latest_shadow_model(db, "s1") == ModelRef("m", "3")
    assert latest_shadow_model(db, "s2") is None


def test_apply_and_previous_active(db: Database) -> None:
    assert deployments.previous_active(db, "s1") is None
    deployments.apply(db, "s1", "admin", {"active": ModelRef("m", "1")})
    deployments.apply(db, "s1", "admin", {"shadow": ModelRef("m", "2")})
    assert deployments.previous_active(db, "s1") is None
    deployments.apply(db, "s1", "admin", {"active": ModelRef("m", "2"), "shadow": None})  # promote
    assert deployments.previous_active(db, "s1") == ModelRef("m", "1")
    assert deployments.current_deployments(db, "shadow") == []
    deployments.apply(db, "s1", "admin", {"active": ModelRef("m", "1")})  # rollback
    assert deployments.previous_active(db, "s1") == ModelRef("m", "2")
    assert [d.model_version for d in deployments.current_deployments(db)] == ["1"]
    deployments.register_model_version(db, name="m", version="2", kind="anomaly",
                                       sha256="a" * 64, card_json="{}", path="/models/m/2")
    assert deployments.model_version_path(db, "m", "2") == "/models/m/2"
    assert deployments.model_version_sha(db, "m", "2") == "a" * 64
    assert deployments.model_version_path(db, "m", "9") is None
