"""Artifact files: the frame as the camera sent it and its heatmap overlay, under the data folder.

Keys look like `2026/11/21/<inspection id>.jpg`: date and id come from the server, the
extension from the decoded format, so no path is ever built from user input. Retention removes
the oldest artifacts by age and by total size, and clears their keys in the records; the orphan
sweep removes files no record points at (a crash or a failed commit after the files were
written).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from sqlalchemy import ColumnElement, delete, func, select, update

from inspector.core.names import utcnow
from inspector.store.db import Database
from inspector.store.models import ArtifactBlob, Inspection

log = logging.getLogger(__name__)

_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "BMP": "bmp", "TIFF": "tif"}
_KEY_RE = re.compile(r"^\d{4}/\d{2}/\d{2}/[0-9a-f]{32}(_heatmap)?\.(jpg|png|bmp|tif)$")
_FILE_RE = re.compile(r"^([0-9a-f]{32})(?:_heatmap)?\.(?:jpg|png|bmp|tif)(\.tmp)?$")
_DAY_PARTS = (re.compile(r"^\d{4}$"), re.compile(r"^\d{2}$"), re.compile(r"^\d{2}$"))
#: Files younger than this are never swept: their frame may still be on its way to the database.
ORPHAN_GRACE = timedelta(hours=1)
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png", "bmp": "image/bmp", "tif": "image/tiff"}


def _find_syncfs() -> Callable[[int], int] | None:
    try:
        return cast(Callable[[int], int], ctypes.CDLL(None, use_errno=True).syncfs)
    except (OSError, AttributeError):
        return None


_SYNCFS = _find_syncfs()


@dataclass(frozen=True)
class SavedArtifacts:
    image_key: str
    heatmap_key: str | None
    nbytes: int


@dataclass(frozen=True)
class RetentionResult:
    removed_records: int
    freed_bytes: int


@dataclass(frozen=True)
class SweepResult:
    removed_files: int
    freed_bytes: int


@dataclass(frozen=True)
class _DaySwept:
    dir_mtime_ns: int  # the folder's mtime before the sweep read it
    until: float  # every file modified up to this time was checked
    complete: bool  # no file was too young to judge


class ArtifactStore:
    """Files under one root folder, addressed by server-made keys."""

    def __init__(self, root: Path, node: str | None = None) -> None:
        """`node`: in a fleet, the node whose records' files live under `root` (each node
        looks after its own disk); None = every record (a lone node)."""
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._swept: dict[Path, _DaySwept] = {}
        self._node = node

    def save(
        self,
        inspection_id: str,
        created_at: datetime,
        image: bytes,
        image_format: str,
        heatmap_jpeg: bytes | None,
        durable: bool = True,
    ) -> SavedArtifacts:
        """Write the frame (original bytes) and the heatmap overlay (JPEG).

        With `durable`, each file is fsynced before this returns. The server passes False and
        calls `flush()` once for a whole group of inspections, just before committing their
        records (one file-system sync instead of two fsyncs per failed part)."""
        if not re.fullmatch(r"[0-9a-f]{32}", inspection_id):
            raise ValueError(f"not an inspection id: {inspection_id!r}")
        ext = _EXTENSIONS.get(image_format.upper(), "png")
        day = created_at.strftime("%Y/%m/%d")
        image_key = f"{day}/{inspection_id}.{ext}"
        self._write(image_key, image, durable)
        heatmap_key = None
        if heatmap_jpeg is not None:
            heatmap_key = f"{day}/{inspection_id}_heatmap.jpg"
            self._write(heatmap_key, heatmap_jpeg, durable)
        return SavedArtifacts(image_key, heatmap_key, len(image) + len(heatmap_jpeg or b""))

    def _write(self, key: str, data: bytes, durable: bool = True) -> None:
        path = self.path(key)
        tmp = path.with_name(path.name + ".tmp")
        try:
            fh = tmp.open("wb")
        except FileNotFoundError:  # first file of the day
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = tmp.open("wb")
        with fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        tmp.replace(path)

    def flush(self) -> None:
        """Make every file written so far durable (data and names): one `syncfs` of the file
        system holding the artifacts; `sync` where syncfs is missing."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _SYNCFS is not None and _SYNCFS(fd) == 0:
                return
            os.sync()
        finally:
            os.close(fd)

    def path(self, key: str) -> Path:
        """The file for a key; refuses anything that is not a server-made key."""
        if not _KEY_RE.match(key):
            raise ValueError(f"not an artifact key: {key!r}")
        return self.root / key

    def remove(self, key: str | None) -> int:
        """Delete one artifact; returns the bytes freed (0 if it was already gone)."""
        if not key:
            return 0
        path = self.path(key)
        try:
            size = path.stat().st_size
            path.unlink()
            return size
        except FileNotFoundError:
            return 0

    def enforce_retention(
        self, db: Database, max_age: timedelta, max_bytes: int, chunk: int = 500
    ) -> RetentionResult:
        """Drop artifacts older than `max_age`, then the oldest until the total fits `max_bytes`.

        Records stay (verdicts are kept); only their artifact keys are cleared, and their
        copies in the shared database. With a `node`, only that node's records count.
        """
        removed, freed = 0, 0
        old = Inspection.created_at < utcnow() - max_age
        while True:
            n, b = self._drop(db, old, chunk, None)
            removed, freed = removed + n, freed + b
            if n < chunk:
                break
        while (excess := self._stored_bytes(db) - max_bytes) > 0:
            n, b = self._drop(db, None, chunk, excess)
            removed, freed = removed + n, freed + b
            if n == 0:
                break
        if removed:
            log.info("retention: removed artifacts of %d inspections, %d bytes", removed, freed)
        return RetentionResult(removed, freed)

    def _mine(self) -> ColumnElement[bool]:
        """Records whose files this store holds (all of them unless a node was named)."""
        return Inspection.node == self._node if self._node else Inspection.image_key.is_not(None)

    def _stored_bytes(self, db: Database) -> int:
        stmt = select(func.coalesce(func.sum(Inspection.artifact_bytes), 0)).where(
            Inspection.image_key.is_not(None), self._mine()
        )
        with db.session() as s:
            return int(s.scalar(stmt) or 0)

    def _drop(
        self, db: Database, condition: ColumnElement[bool] | None, limit: int,
        excess: int | None,
    ) -> tuple[int, int]:
        """Remove artifacts of the oldest records matching `condition`: up to `limit` of them,
        or (with `excess`) just enough of them to free that many bytes."""
        stmt = select(Inspection.id, Inspection.image_key, Inspection.heatmap_key,
                      Inspection.artifact_bytes).where(Inspection.image_key.is_not(None),
                                                       self._mine())
        if condition is not None:
            stmt = stmt.where(condition)
        with db.session() as s:
            rows = list(s.execute(stmt.order_by(Inspection.id).limit(limit)))
            if excess is not None:
                chosen, total = [], 0
                for row in rows:
                    if total >= excess:
                        break
                    chosen.append(row)
                    total += row[3]
                rows = chosen
            if not rows:
                return 0, 0
            freed = sum(self.remove(img) + self.remove(heat) for _, img, heat, _n in rows)
            ids = [r[0] for r in rows]
            s.execute(
                update(Inspection)
                .where(Inspection.id.in_(ids))
                .values(image_key=None, heatmap_key=None, artifact_bytes=0)
            )
            s.execute(delete(ArtifactBlob).where(ArtifactBlob.inspection_id.in_(ids)))
        return len(rows), freed

    def sweep_orphans(self, db: Database, grace: timedelta = ORPHAN_GRACE,
                      now: float | None = None, chunk: int = 500) -> SweepResult:
        """Delete artifact files that no inspection record points at, and leftover `.tmp`
        files, once they are older than `grace` (files of frames still on their way to the
        database are younger). Empty day folders of past days go too.

        Cheap to repeat: a day folder unchanged since a complete sweep is skipped, and only
        files modified since the last sweep of their folder are looked up in the database
        (the first sweep of a process checks everything)."""
        cutoff = (time.time() if now is None else now) - grace.total_seconds()
        removed, freed = 0, 0
        for day in self._day_folders():
            try:
                dir_mtime = day.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            before = self._swept.get(day)
            if before and before.complete and before.dir_mtime_ns == dir_mtime:
                continue
            since = before.until if before else float("-inf")
            n, b, young, files_left = self._sweep_day(db, day, since, cutoff, chunk)
            removed, freed = removed + n, freed + b
            self._swept[day] = _DaySwept(dir_mtime, cutoff, not young)
            if not files_left and self._past_day(day):
                self._remove_empty(day)
        if removed:
            log.info("artifact sweep: removed %d orphan files (%d bytes) that no inspection "
                     "record points at", removed, freed)
        return SweepResult(removed, freed)

    def _day_folders(self) -> Iterator[Path]:
        def subdirs(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
            try:
                return sorted(p for p in folder.iterdir()
                              if pattern.match(p.name) and p.is_dir() and not p.is_symlink())
            except FileNotFoundError:
                return []

        for year in subdirs(self.root, _DAY_PARTS[0]):
            for month in subdirs(year, _DAY_PARTS[1]):
                yield from subdirs(month, _DAY_PARTS[2])

    def _sweep_day(self, db: Database, day: Path, since: float, cutoff: float,
                   chunk: int) -> tuple[int, int, bool, bool]:
        """(files removed, bytes freed, saw files too young to judge, files remain)."""
        prefix = day.relative_to(self.root).as_posix()
        young, files_left = False, False
        candidates: list[tuple[str, str, Path, int]] = []  # (id, key, path, size)
        leftovers: list[tuple[Path, int]] = []
        with os.scandir(day) as entries:
            for entry in entries:
                files_left = True
                match = _FILE_RE.match(entry.name)
                if not match or not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
                if st.st_mtime > cutoff:
                    young = True
                elif match[2]:
                    leftovers.append((Path(entry.path), st.st_size))
                elif st.st_mtime > since:
                    candidates.append((match[1], f"{prefix}/{entry.name}", Path(entry.path),
                                       st.st_size))
        referenced: set[str] = set()
        for i in range(0, len(candidates), chunk):
            ids = sorted({c[0] for c in candidates[i:i + chunk]})
            stmt = select(Inspection.image_key, Inspection.heatmap_key).where(
                Inspection.id.in_(ids))
            with db.session() as s:
                for image_key, heatmap_key in s.execute(stmt):
                    referenced.update(k for k in (image_key, heatmap_key) if k)
        doomed = leftovers + [(path, size) for _id, key, path, size in candidates
                              if key not in referenced]
        removed, freed = 0, 0
        for path, size in doomed:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed, freed = removed + 1, freed + size
        if removed:
            files_left = any(True for _ in os.scandir(day))
        return removed, freed, young, files_left

    @staticmethod
    def _past_day(day: Path) -> bool:
        """True for folders of days before yesterday (UTC): no frame is written there now."""
        try:
            date = datetime.strptime("/".join(day.parts[-3:]), "%Y/%m/%d").replace(tzinfo=UTC)
        except ValueError:
            return False
        return date < utcnow() - timedelta(days=2)

    def _remove_empty(self, day: Path) -> None:
        for folder in (day, day.parent, day.parent.parent):
            try:
                folder.rmdir()
            except OSError:  # not empty (another day, or a frame arrived): keep it
                return
            self._swept.pop(folder, None)
