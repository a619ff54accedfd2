"""Flagged frames' artifacts in the shared database, so any node of a fleet can show them.

A node keeps every artifact in its own folder (inspector.store.artifacts). With fleet storage
on, the image and heatmap of every `fail` verdict (the frames reviewers work through) are also
copied into `artifact_blobs` right after their record commits, off the answer's path. Any node
then serves a part page or a dataset export from the database when the file is not on its
own disk, even after the node that judged the frame is gone. Sampled passes stay local:
copying them all would put the whole camera stream into the database. Retention removes the
copies together with the files; `expire` (run by every node's retention loop) removes copies
older than the retention age whichever node made them, so those of a node that left the fleet
go too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, insert, select

from inspector.core.names import utcnow
from inspector.store.artifacts import ArtifactStore
from inspector.store.db import Database
from inspector.store.inspections import NewInspection
from inspector.store.models import ArtifactBlob, Inspection

log = logging.getLogger(__name__)


def share(db: Database, artifacts: ArtifactStore, items: Sequence[NewInspection]) -> int:
    """Copy the stored artifacts of the fail verdicts among `items`; returns how many."""
    rows = []
    for item in items:
        if item.verdict != "fail":
            continue
        for key in (item.image_key, item.heatmap_key):
            if key is None:
                continue
            try:
                rows.append({"key": key, "inspection_id": item.id,
                             "data": artifacts.path(key).read_bytes()})
            except FileNotFoundError:  # removed by retention in the meantime
                continue
    if rows:
        with db.session() as s:
            s.execute(insert(ArtifactBlob), rows)
    return len(rows)


def read(db: Database, key: str) -> bytes | None:
    """The shared copy of an artifact, or None."""
    with db.session() as s:
        return s.scalar(select(ArtifactBlob.data).where(ArtifactBlob.key == key))


def expire(db: Database, max_age: timedelta, chunk: int = 500) -> int:
    """Delete the shared copies of frames judged more than `max_age` ago, by any node;
    returns how many. In chunks, so a long backlog never holds one huge transaction."""
    cutoff = utcnow() - max_age
    removed = 0
    while True:
        old = (select(ArtifactBlob.key)
               .join(Inspection, Inspection.id == ArtifactBlob.inspection_id)
               .where(Inspection.created_at < cutoff).limit(chunk))
        with db.session() as s:
            keys = list(s.scalars(old))
            if keys:
                s.execute(delete(ArtifactBlob).where(ArtifactBlob.key.in_(keys)))
        removed += len(keys)
        if len(keys) < chunk:
            break
    if removed:
        log.info("retention: removed %d shared artifact copies older than %s", removed, max_age)
    return removed
