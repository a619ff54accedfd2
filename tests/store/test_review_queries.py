"""Review listing, the review queue and station figures on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from inspector.store import reviews, station_stats
from inspector.store.db import Database
from inspector.store.inspections import NewInspection, add_review, new_id, record_batch

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def record(i: int, station: str = "s1", score: float = 0.2, threshold: float = 0.5,
           image: bool | None = None) -> NewInspection:
    verdict = "fail" if score >= threshold else "pass"
    stored = verdict == "fail" if image is None else image
    return NewInspection(
        id=f"{i:012x}" + new_id()[12:], created_at=T0 + timedelta(minutes=i), node="n",
        line="l", station=station, part_id=f"P{i}", model_name="tiny", model_version="1",
        score=score, threshold=threshold, verdict=verdict, label=None, frame_width=64,
        frame_height=48, queue_ms=0.0, decode_ms=0.0, inference_ms=0.0, total_ms=0.0,
        image_key=f"2024/05/01/{i:032x}.jpg" if stored else None,
    )


def test_current_reviews_history_and_pages(db: Database) -> None:
    items = [record(i, score=0.9) for i in range(3)] + [record(9, station="s2", score=0.9)]
    record_batch(db, items, [])
    add_review(db, items[0].id, label="good", reviewer="ann")
    add_review(db, items[0].id, label="defect", reviewer="bob", defect_type="dent")
    add_review(db, items[1].id, label="defect", reviewer="ann", defect_type="scratch")
    add_review(db, items[2].id, label="defect", reviewer="ann", defect_type="scratch")
    add_review(db, items[3].id, label="good", reviewer="ann", note="glare")

    current, cursor = reviews.list_reviews(db, reviews.ReviewQuery())
    assert cursor is None
    assert [(r.inspection_id, r.label, r.reviewer) for r in current] == [
        (items[3].id, "good", "ann"), (items[2].id, "defect", "ann"),
        (items[1].id, "defect", "ann"), (items[0].id, "defect", "bob")]
    assert current[0].station == "s2" and current[0].note == "glare"
    assert current[0].model_version == "1" and current[0].verdict == "fail"
    history, _ = reviews.list_reviews(db, reviews.ReviewQuery(history=True))
    assert len(history) == 5
    page, cursor = reviews.list_reviews(db, reviews.ReviewQuery(station="s1", limit=2))
    assert len(page) == 2 and cursor is not None
    rest, end = reviews.list_reviews(db, reviews.ReviewQuery(station="s1", before=cursor))
    assert [r.inspection_id for r in rest] == [items[0].id] and end is None
    goods, _ = reviews.list_reviews(db, reviews.ReviewQuery(label="good"))
    assert [r.inspection_id for r in goods] == [items[3].id]
    # "good" by ann was replaced by bob's "defect": it no longer counts as a type or label.
    assert reviews.defect_types(db) == ["scratch", "dent"]


def test_queue_order_filters_and_next(db: Database) -> None:
    items = [record(i, score=0.9 if i % 2 else 0.1, image=True) for i in range(8)]
    items.append(record(20, score=0.95, station="s2"))
    items.append(replace(record(21, score=0.95), image_key=None))  # removed by retention
    record_batch(db, items, [])
    add_review(db, items[3].id, label="good", reviewer="ann")
    awaiting = reviews.QueueQuery(station="s1")
    rows, total = reviews.queue_page(db, awaiting, 1, 2)
    assert total == 3 and [r.id for r in rows] == [items[7].id, items[5].id]
    rows, _ = reviews.queue_page(db, awaiting, 2, 2)
    assert [r.id for r in rows] == [items[1].id]
    assert reviews.next_in_queue(db, awaiting, items[7].id) == items[5].id
    assert reviews.next_in_queue(db, awaiting, items[1].id) is None
    done = replace(awaiting, state="reviewed")
    assert [r.id for r in reviews.queue_page(db, done, 1, 10)[0]] == [items[3].id]
    passes = replace(awaiting, verdict="pass")
    assert reviews.queue_page(db, passes, 1, 10)[1] == 4
    window = replace(awaiting, since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=6))
    assert [r.id for r in reviews.queue_page(db, window, 1, 10)[0]] == [items[5].id]
    assert reviews.queue_stations(db) == ["s1", "s2"]


def test_station_stats_and_score_grid(db: Database) -> None:
    items = [record(i, score=0.2 + 0.007 * i) for i in range(40)]
    items += [record(40 + i, score=0.8) for i in range(10)]
    items += [record(60, station="other", score=0.9)]
    record_batch(db, items, [])
    for k, label in enumerate(["good", "good", "defect", "defect", "defect"]):
        add_review(db, items[40 + k].id, label=label, reviewer="ann")  # type: ignore[arg-type]
    add_review(db, items[0].id, label="defect", reviewer="ann")  # an escape found

    (s1,) = station_stats.station_stats(db, station="s1")
    assert (s1.total, s1.passed, s1.failed) == (50, 40, 10)
    assert s1.reviewed_fails == 5 and s1.overturned == 2 and s1.confirmed == 3
    assert s1.yield_rate == 0.8 and s1.overturn_rate == 0.4 and s1.escapes == 1
    assert s1.last_seen == T0 + timedelta(minutes=49)
    # Against reviews: 3 confirmed + 1 escape reviewed defects; 2 overturned reviewed goods.
    assert (s1.reviewed, s1.reviewed_defects, s1.reviewed_goods) == (6, 4, 2)
    assert s1.reviewed_escape_rate == 0.25 and s1.reviewed_false_reject_rate == 1.0
    # One reviewed pass stands for 40 passes, one reviewed fail for 2 fails.
    assert s1.line_rates() == (pytest.approx(40 / 46), pytest.approx(1.0))
    assert station_stats.StationStats("x", passed=5, failed=1, reviewed_fails=1).line_rates() \
        == (None, None)
    assert [s.station for s in station_stats.station_stats(db)] == ["other", "s1"]
    late = station_stats.station_stats(db, since=T0 + timedelta(minutes=45), station="s1")
    assert late[0].total == 5
    assert station_stats.StationStats("x").overturn_rate is None

    grid = station_stats.score_grid(db, "s1", None, None, time_bins=10, score_bins=8)
    assert grid is not None and grid.time_bins == 10
    assert sum(n for *_, n in grid.cells) == 50 == sum(grid.counts)
    assert sum(grid.fails) == sum(grid.fails[8:]) == 10  # the fails are the last 10 minutes
    assert grid.thresholds == [0.5] * 10
    assert grid.score_lo < 0.2 and grid.score_hi > 0.8
    means = [m for m in grid.means if m is not None]
    assert means == sorted(means)  # scores rise with time
    assert station_stats.score_grid(db, "nowhere", None, None) is None
    assert station_stats.models_seen(db, "s1") == [("tiny", "1", 50)]
