"""Progress for the long steps (feature extraction, coreset selection, epochs, evaluation).

On a terminal, rich draws bars. Anywhere else (logs piped to a file, CI) plain lines go to
stderr instead: `coreset selection: 120/400 (30%), 0:01:02 elapsed, ETA 0:02:25`, at each
tenth of a step once the step has run QUIET_S seconds, and at least every LINE_EVERY_S
seconds; a step that ends within QUIET_S seconds prints nothing (the training summary times
every phase), so a long run is never silent and a short one is not noisy.
`INSPECTOR_PROGRESS=0` turns both off.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import IO, Protocol, TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

#: Plain mode: a line at least every this many seconds, and at every this share of the total
#: once a step has run QUIET_S seconds (a step shorter than that prints nothing).
LINE_EVERY_S = 30.0
LINE_EVERY_SHARE = 0.1
QUIET_S = 5.0


def enabled() -> bool:
    return os.environ.get("INSPECTOR_PROGRESS", "1") != "0"


def _on_terminal(stream: IO[str]) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


class Bar(Protocol):
    """A handle on one bar: `advance(steps)`."""

    def advance(self, steps: int = 1) -> None: ...


class _RichBar:
    def __init__(self, progress: Progress, task_id: object) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, steps: int = 1) -> None:
        self._progress.advance(self._task_id, steps)  # type: ignore[arg-type]


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class PlainBar:
    """Progress as plain lines for a stream that is not a terminal."""

    def __init__(self, description: str, total: int, stream: IO[str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.description, self.total, self.stream, self._clock = description, total, stream, clock
        self.done = 0
        self._start = self._last_time = clock()
        self._last_share = 0.0
        self._lines = 0

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        now = self._clock()
        share = self.done / self.total if self.total else 1.0
        if now - self._last_time >= LINE_EVERY_S or (
                now - self._start >= QUIET_S
                and (share - self._last_share >= LINE_EVERY_SHARE
                     or share >= 1.0 > self._last_share)):
            self._line(now, share)

    def finish(self) -> None:
        """The closing line of a step that printed (or ran long enough to), unless the last
        line already said where it ended."""
        share = self.done / self.total if self.total else 1.0
        now = self._clock()
        spoke = self._lines > 0 or now - self._start >= QUIET_S
        if spoke and self.done and self._last_share != share:
            self._line(now, share)

    def _line(self, now: float, share: float) -> None:
        elapsed = now - self._start
        text = f"{self.description}: {self.done}/{self.total} ({share:.0%}), " \
               f"{_clock(elapsed)} elapsed"
        if 0 < share < 1:
            text += f", ETA {_clock(elapsed * (1 - share) / share)}"
        print(text, file=self.stream, flush=True)
        self._last_time, self._last_share = now, share
        self._lines += 1


def _rich(stream: IO[str]) -> Progress:
    from rich.console import Console

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
        console=Console(file=stream),
    )


class _Silent:
    def advance(self, steps: int = 1) -> None:
        pass


@contextmanager
def task(description: str, total: int, stream: IO[str] | None = None) -> Iterator[Bar]:
    """A bar advanced by hand: `with task("coreset", n) as bar: bar.advance(k)`. Rich on a
    terminal, plain lines elsewhere (see the module docstring); `stream` defaults to stderr."""
    out = stream or sys.stderr
    if not enabled():
        yield _Silent()
    elif _on_terminal(out):
        with _rich(out) as progress:
            yield _RichBar(progress, progress.add_task(description, total=total))
    else:
        bar = PlainBar(description, total, out)
        yield bar
        bar.finish()


def track(items: Sequence[T], description: str, stream: IO[str] | None = None) -> Iterator[T]:
    """Iterate over `items` with progress."""
    with task(description, len(items), stream) as bar:
        for item in items:
            yield item
            bar.advance()


def batches(n: int, size: int) -> Iterable[slice]:
    """Slices covering range(n) in steps of `size`."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))
