"""Progress bars for the long steps (feature extraction, coreset selection, epochs).

Rich draws them on a terminal and stays silent otherwise (tests, logs piped to a file);
`INSPECTOR_PROGRESS=0` turns them off everywhere.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get("INSPECTOR_PROGRESS", "1") != "0" and sys.stderr.isatty()


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
        disable=not enabled(),
    )


def track(items: Sequence[T], description: str) -> Iterator[T]:
    """Iterate over `items` with a progress bar."""
    with _progress() as progress:
        yield from progress.track(items, total=len(items), description=description)


@contextmanager
def task(description: str, total: int) -> Iterator[Bar]:
    """A bar advanced by hand: `with task("coreset", n) as bar: bar.advance(k)`."""
    with _progress() as progress:
        yield Bar(progress, progress.add_task(description, total=total))


class Bar:
    """A handle on one bar."""

    def __init__(self, progress: Progress, task_id: object) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, steps: int = 1) -> None:
        self._progress.advance(self._task_id, steps)  # type: ignore[arg-type]

    def update(self, **fields: object) -> None:
        self._progress.update(self._task_id, **fields)  # type: ignore[arg-type]


def batches(n: int, size: int) -> Iterable[slice]:
    """Slices covering range(n) in steps of `size`."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))
