"""The orphan sweep: artifact files no inspection record points at are removed once they are
older than the grace period; referenced and young files stay. Real database, real files."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inspector.store.artifacts import ORPHAN_GRACE, ArtifactStore
from inspector.store.db import Database
from inspector.store.inspections import NewInspection, new_id, record_batch


def _record(created_at: datetime) -> NewInspection:
    return NewInspection(
        id=new_id(), created_at=created_at, node="n1", line="l1", station="s1", part_id="p",
        model_name="tiny", model_version="1", score=0.9, threshold=0.5, verdict="fail",
        label=None, frame_width=64, frame_height=48, queue_ms=1.0, decode_ms=1.0,
        inference_ms=1.0, total_ms=3.0,
    )


def _save(store: ArtifactStore, created_at: datetime, age: timedelta,
          db: Database | None) -> list[Path]:
    """A frame's files aged `age`; committed to `db` unless it is None (an orphan)."""
    rec = _record(created_at)
    saved = store.save(rec.id, created_at, b"frame" * 100, "JPEG", b"heat" * 50, durable=False)
    if db is not None:
        record_batch(db, [replace(rec, image_key=saved.image_key, heatmap_key=saved.heatmap_key,
                                  artifact_bytes=saved.nbytes)], [])
    paths = [store.path(saved.image_key)]
    if saved.heatmap_key:
        paths.append(store.path(saved.heatmap_key))
    stamp = time.time() - age.total_seconds()
    for p in paths:
        os.utime(p, (stamp, stamp))
    return paths


def test_sweep_removes_old_orphans_only(db: Database, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    now = datetime.now(UTC)
    old = ORPHAN_GRACE * 2
    referenced = _save(store, now, old, db)
    orphan = _save(store, now, old, None)
    young_orphan = _save(store, now, timedelta(minutes=5), None)
    earlier = _save(store, now - timedelta(days=5), old, None)  # the only files of that day
    stale_tmp = store.root / orphan[0].relative_to(store.root).parent / f"{new_id()}.jpg.tmp"
    stale_tmp.write_bytes(b"half a frame")
    os.utime(stale_tmp, (time.time() - old.total_seconds(),) * 2)
    stranger = orphan[0].parent / "notes.txt"  # not ours: never touched
    stranger.write_text("keep")
    os.utime(stranger, (time.time() - old.total_seconds(),) * 2)

    with caplog.at_level(logging.INFO, logger="inspector.store.artifacts"):
        result = store.sweep_orphans(db)

    assert all(p.is_file() for p in referenced + young_orphan)
    assert stranger.is_file()
    assert not any(p.exists() for p in orphan + earlier + [stale_tmp])
    assert result.removed_files == len(orphan) + len(earlier) + 1
    assert result.freed_bytes == sum(len(b) for b in (b"frame" * 100, b"heat" * 50)) * 2 + 12
    assert "removed 5 orphan files" in caplog.text
    assert not earlier[0].parent.exists()  # the emptied folder of a past day goes too

    # The young orphan is removed once it is past the grace period; the rest is left alone.
    again = store.sweep_orphans(db, now=time.time() + ORPHAN_GRACE.total_seconds())
    assert again.removed_files == len(young_orphan)
    assert not any(p.exists() for p in young_orphan)
    assert all(p.is_file() for p in referenced)


def test_sweep_checks_files_arriving_after_a_previous_sweep(db: Database,
                                                            tmp_path: Path) -> None:
    """Folders already swept are looked at again when files appear in them."""
    store = ArtifactStore(tmp_path / "artifacts")
    now = datetime.now(UTC)
    kept = _save(store, now, ORPHAN_GRACE * 2, db)
    assert store.sweep_orphans(db).removed_files == 0
    assert store.sweep_orphans(db).removed_files == 0  # unchanged folder: skipped
    later = time.time() + 10
    orphan = _save(store, now, timedelta(0), None)
    for p in orphan:
        os.utime(p, (later, later))
    result = store.sweep_orphans(db, now=later + ORPHAN_GRACE.total_seconds() + 1)
    assert result.removed_files == len(orphan)
    assert all(p.is_file() for p in kept)


def test_sweep_removes_files_whose_record_no_longer_points_at_them(db: Database,
                                                                   tmp_path: Path) -> None:
    """A record committed without artifacts (or cleared by retention) leaves its files
    unreferenced: they are orphans too."""
    store = ArtifactStore(tmp_path / "artifacts")
    now = datetime.now(UTC)
    rec = _record(now)
    saved = store.save(rec.id, now, b"frame", "PNG", None)
    record_batch(db, [rec], [])  # committed, but image_key left empty
    path = store.path(saved.image_key)
    stamp = time.time() - ORPHAN_GRACE.total_seconds() * 2
    os.utime(path, (stamp, stamp))
    assert store.sweep_orphans(db).removed_files == 1
    assert not path.exists()


@pytest.mark.slow
def test_the_server_sweeps_orphans_at_startup(tmp_path: Path) -> None:
    """`inspector serve` runs the sweep in its retention loop (first pass at startup)."""
    from tests.model_factory import make_package
    from tests.server.harness import ServerProcess, base_env

    make_package(tmp_path / "models")
    store = ArtifactStore(tmp_path / "data" / "artifacts")
    orphan = store.save(new_id(), datetime.now(UTC), b"frame", "JPEG", None)
    path = store.path(orphan.image_key)
    stamp = time.time() - ORPHAN_GRACE.total_seconds() * 2
    os.utime(path, (stamp, stamp))
    env = base_env(tmp_path / "data")
    with ServerProcess(env, tmp_path / "models", tmp_path / "server.log") as server:
        deadline = time.monotonic() + 30
        while (path.exists() or "removed 1 orphan files" not in server.log()) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not path.exists(), server.log()
        assert "removed 1 orphan files" in server.log()
