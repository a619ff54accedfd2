"""The hot folder: image files dropped into a folder are judged by a running server.

A watchdog observer reports new and changed files; a file is sent once it is complete (its
size and mtime unchanged for `settle_s`, or it was renamed into the folder), then moved to
`done/` (the server answered 200) or `failed/` (a 4xx about the file) with `<name>.json`
beside it. The sidecar is written first: it is the record that the verdict was acknowledged,
so a restart that finds one for a file still in the folder just finishes the move. Nothing
is moved without an answer: connection errors, 503 (Retry-After) and other 5xx are retried.
Each request carries an Idempotency-Key made of the file's name and bytes, so a file resent
after a crash between the server's answer and the sidecar (or after a lost answer) gets its
first verdict back instead of a second record.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from inspector.connect.client import ConnectError, InspectClient
from inspector.core.datasets import IMAGE_SUFFIXES, list_images
from inspector.core.names import utcnow

log = logging.getLogger(__name__)

MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff"}


class HotFolderError(ConnectError):
    """The folder cannot be served as configured (bad key, unknown station, bad pattern)."""


@dataclass(frozen=True)
class FolderConfig:
    """Where to watch, where to send, and where judged files go."""

    watch: Path
    station: str
    url: str
    key: str
    part_id_pattern: str | None = None
    done: Path | None = None  # default: <watch>/done
    failed: Path | None = None  # default: <watch>/failed
    settle_s: float = 0.5
    timeout_s: float = 30.0
    max_backoff_s: float = 30.0
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if self.part_id_pattern is not None:
            try:
                object.__setattr__(self, "_pattern", re.compile(self.part_id_pattern))
            except re.error as exc:
                raise HotFolderError(f"--part-id-pattern {self.part_id_pattern!r}: {exc}") from exc

    @property
    def done_dir(self) -> Path:
        return self.done or self.watch / "done"

    @property
    def failed_dir(self) -> Path:
        return self.failed or self.watch / "failed"

    def part_id(self, path: Path) -> str | None:
        """The named group `part` (or the whole match) of the pattern in the file name; the
        stem when there is no pattern; None when the pattern does not match."""
        if self._pattern is None:
            return path.stem
        m = self._pattern.search(path.name)
        if m is None:
            return None
        return m.group("part") if "part" in self._pattern.groupindex else m.group(0)


@dataclass
class _Pending:
    size: int
    mtime_ns: int
    due: float


class _Events(FileSystemEventHandler):
    """Hands watchdog's events to the worker thread: (path, renamed_in)."""

    def __init__(self, inbox: queue.Queue[tuple[Path, bool]]) -> None:
        self.inbox = inbox

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if event.event_type == "moved":
            self.inbox.put((Path(os.fsdecode(event.dest_path)), True))
        elif event.event_type in ("created", "modified", "closed"):
            self.inbox.put((Path(os.fsdecode(event.src_path)), False))


class HotFolder:
    """Judges the images in one folder through the server's POST /v1/inspect."""

    def __init__(self, config: FolderConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        self.watch = config.watch.resolve()
        self.client = InspectClient(config.url, config.key, config.station,
                                    timeout_s=config.timeout_s,
                                    max_backoff_s=config.max_backoff_s, client=client)
        self.pending: dict[Path, _Pending] = {}
        self.inbox: queue.Queue[tuple[Path, bool]] = queue.Queue()
        self.judged = 0
        config.done_dir.mkdir(parents=True, exist_ok=True)
        config.failed_dir.mkdir(parents=True, exist_ok=True)

    # -- what is waiting --------------------------------------------------------------------

    def _wanted(self, path: Path) -> bool:
        return (path.parent == self.watch and path.suffix.lower() in IMAGE_SUFFIXES
                and not path.name.startswith("."))

    def _note(self, path: Path, *, complete: bool = False) -> None:
        """Start (or restart) the settle timer of a file; a renamed-in file is due now."""
        if not self._wanted(path):
            return
        try:
            st = path.stat()
        except FileNotFoundError:
            self.pending.pop(path, None)
            return
        now = time.monotonic()
        age = max(0.0, time.time() - st.st_mtime)
        due = now if complete else now + max(0.0, self.config.settle_s - age)
        old = self.pending.get(path)
        if old is not None and not complete and (old.size, old.mtime_ns) == (st.st_size,
                                                                              st.st_mtime_ns):
            return  # no change: keep the timer running
        self.pending[path] = _Pending(st.st_size, st.st_mtime_ns, due)

    def _scan(self) -> None:
        for path in list_images(self.watch):
            self._note(path.resolve())

    def _take_events(self, wait_s: float) -> None:
        try:
            path, complete = self.inbox.get(timeout=max(0.0, wait_s))
        except queue.Empty:
            return
        while True:
            self._note(path.resolve() if path.is_absolute() else (self.watch / path).resolve(),
                       complete=complete)
            try:
                path, complete = self.inbox.get_nowait()
            except queue.Empty:
                return

    def _work_due(self, stop: threading.Event) -> None:
        now = time.monotonic()
        for path, p in sorted(self.pending.items(), key=lambda kv: kv[1].due):
            if stop.is_set() or p.due > now:
                return
            try:
                st = path.stat()
            except FileNotFoundError:
                del self.pending[path]
                continue
            if (st.st_size, st.st_mtime_ns) != (p.size, p.mtime_ns):
                self._note(path)  # still being written
                continue
            if self.handle(path, stop):
                self.pending.pop(path, None)

    def _next_wait(self) -> float:
        if not self.pending:
            return 0.5
        return max(0.0, min(p.due for p in self.pending.values()) - time.monotonic())

    # -- the loops --------------------------------------------------------------------------

    def process_existing(self, stop: threading.Event | None = None) -> int:
        """Judge (or finish moving) every image already in the folder, each once its size is
        settled; returns how many were sent to the server."""
        stop = stop or threading.Event()
        before = self.judged
        self._scan()
        while self.pending and not stop.is_set():
            self._work_due(stop)
            if self.pending:
                stop.wait(min(self._next_wait(), 0.2))
                self._scan()
        return self.judged - before

    def run(self, stop: threading.Event) -> None:
        """Watch the folder until `stop` is set: files present now first, then new ones."""
        observer = Observer()
        observer.schedule(_Events(self.inbox), str(self.watch), recursive=False)
        observer.start()
        try:
            self._scan()  # after the observer started: nothing falls between the two
            while not stop.is_set():
                self._work_due(stop)
                self._take_events(min(self._next_wait(), 0.5))
        finally:
            observer.stop()
            observer.join(timeout=5)

    # -- one file ---------------------------------------------------------------------------

    def handle(self, path: Path, stop: threading.Event) -> bool:
        """Judge one complete file and move it; False when it must wait (stopped)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return True  # taken away before it was judged
        digest = hashlib.sha256(data).hexdigest()
        for folder in (self.config.done_dir, self.config.failed_dir):
            judged = _acknowledged(folder, path.name, digest)
            if judged is not None:
                log.info("%s: already judged, moving it to %s", path.name, folder / judged)
                os.replace(path, folder / judged)
                return True
        part = self.config.part_id(path)
        # a resend after a crash between the server's answer and the sidecar is answered
        # from the first record, not judged twice
        answer = self.client.send(data, MEDIA_TYPES.get(path.suffix.lower(),
                                                        "application/octet-stream"),
                                  part, path.name, stop,
                                  idempotency_key=request_key(path.name, data))
        if answer is None:
            return False
        status, body = answer.status, answer.body
        self.judged += 1
        folder = self.config.done_dir if status == 200 else self.config.failed_dir
        name = _free_name(folder, path.name)
        record: dict[str, Any] = {
            "file": path.name, "station": self.config.station, "part_id": part,
            "sent_at": utcnow().isoformat(), "status": status, "bytes": len(data), "sha256": digest,
        }
        record["answer" if status == 200 else "error"] = body
        side = folder / f"{name}.json"
        tmp = side.with_name(f".{side.name}.tmp")
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, side)  # the acknowledgement; the move below may be redone on restart
        os.replace(path, folder / name)
        log.info("%s: %s -> %s", path.name, answer.summary, folder / name)
        return True

def request_key(name: str, data: bytes) -> str:
    """The Idempotency-Key of a file: its name and bytes (a new file of the same name is a
    new frame; the same file sent again is the same request)."""
    return "file-" + hashlib.sha256(name.encode("utf-8", "surrogateescape") + b"\0" + data
                                    ).hexdigest()[:48]


def _sidecar_sha(side: Path) -> str | None:
    try:
        value = json.loads(side.read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _names(name: str) -> Iterator[str]:
    """`name`, `stem.1.suffix`, `stem.2.suffix`, ...: the names a file may get in done/."""
    stem, suffix = os.path.splitext(name)
    yield name
    yield from (f"{stem}.{n}{suffix}" for n in itertools.count(1))


def _acknowledged(folder: Path, name: str, digest: str) -> str | None:
    """The name under which this very file's verdict was recorded in `folder` but the file
    itself not yet moved there (a stop between sidecar and move), or None."""
    for candidate in _names(name):
        side = folder / f"{candidate}.json"
        if not side.is_file():
            return None
        if _sidecar_sha(side) == digest and not (folder / candidate).exists():
            return candidate
    return None


def _free_name(folder: Path, name: str) -> str:
    """`name`, or `stem.N.suffix` when a different file of that name was judged before."""
    return next(c for c in _names(name)
                if not (folder / c).exists() and not (folder / f"{c}.json").exists())
