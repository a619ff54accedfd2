"""When a frame of a stream is judged: the trigger interface and the simple triggers.

A trigger looks at every frame read (`check`) and says whether this one is taken, perhaps
with a part id. Triggers driven by the line rather than the picture (an MQTT message, an OPC
UA node change) derive from `EventTrigger`: their own thread calls `request()`, and the next
frame read after that call is taken; `fail()` stops the adapter when the line refuses the
setup (a wrong password, an unknown node).
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np

from inspector.connect.client import ConnectError
from inspector.core.errors import InvalidTextError
from inspector.core.text import check_text

log = logging.getLogger(__name__)

#: The server's limit on a part id (POST /v1/inspect?part_id=).
PART_ID_MAX = 128


@dataclass(frozen=True)
class Frame:
    """One frame read from the source."""

    image: np.ndarray  # BGR, as OpenCV reads it
    ts: float  # seconds on the source's clock: a file's own timeline, else time.monotonic()
    started: float  # time.monotonic() when its read began


@dataclass(frozen=True)
class Fire:
    """A trigger took a frame; `part_id` when the line said which part it shows."""

    part_id: str | None = None


@dataclass
class Counters:
    """What an adapter did, for the periodic log line and the summary on stop. Every
    triggered frame ends up posted, refused or dropped."""

    read: int = 0
    triggered: int = 0
    posted: int = 0
    refused: int = 0
    dropped: int = 0
    reconnects: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, *names: str) -> None:
        with self._lock:
            for name in names:
                setattr(self, name, getattr(self, name) + 1)

    def line(self) -> str:
        with self._lock:
            return ", ".join(f"{f.name} {getattr(self, f.name)}" for f in fields(self))


def line_part_id(part: str, source: str) -> str | None:
    """`part` when the server would take it as a part id; else None (the adapter makes one
    up), with a warning that names `source`."""
    try:
        return check_text(part, "part_id", max_length=PART_ID_MAX)
    except InvalidTextError as exc:
        log.warning("%s: %s; the part id is made up", source, exc)
        return None


class Trigger(Protocol):
    """Decides which frames are judged. `start` before the first frame, `close` at the end."""

    def start(self, stop: threading.Event, counters: Counters) -> None: ...

    def check(self, frame: Frame) -> Fire | None: ...

    def close(self) -> None: ...


class RateTrigger:
    """A fixed rate on the source's clock: the first frame, then one every 1/fps seconds
    (a frame at or after each due time; a gap longer than a period restarts the schedule)."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.due: float | None = None

    def start(self, stop: threading.Event, counters: Counters) -> None:
        """Nothing to start: the rate needs only the frames' times."""

    def check(self, frame: Frame) -> Fire | None:
        if self.due is None or frame.ts - self.due >= self.period:
            self.due = frame.ts + self.period
        elif frame.ts < self.due - 1e-6:
            return None
        else:
            self.due += self.period
        return Fire()

    def close(self) -> None:
        """Nothing to release."""


class EventTrigger:
    """Takes the next frame read after each `request()` from another thread. Requests wait in
    a bounded queue, one frame each; one beyond `max_pending` is dropped (and counted)."""

    def __init__(self, max_pending: int = 32) -> None:
        self.pending: collections.deque[tuple[float, str | None]] = collections.deque()
        self.max_pending = max_pending
        self.counters = Counters()
        self.error: ConnectError | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def start(self, stop: threading.Event, counters: Counters) -> None:
        self.counters = counters
        self._stop = stop

    def fail(self, error: ConnectError) -> None:
        """The line refused the setup: stop the adapter, which then raises `error`."""
        self.error = error
        self._stop.set()

    def request(self, at: float, part_id: str | None) -> None:
        """The line asked for a frame at monotonic time `at`."""
        with self._lock:
            if len(self.pending) < self.max_pending:
                self.pending.append((at, part_id))
                return
        self.counters.add("triggered", "dropped")
        log.warning("trigger for part %s dropped: %d are already waiting for a frame",
                    part_id, self.max_pending)

    def check(self, frame: Frame) -> Fire | None:
        if self.error is not None:
            raise self.error
        with self._lock:
            if self.pending and self.pending[0][0] <= frame.started:
                return Fire(self.pending.popleft()[1])
        return None

    def close(self) -> None:
        """Nothing to release here; subclasses disconnect from the line."""
