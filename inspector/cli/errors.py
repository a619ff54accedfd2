"""The command line's one error style: `error: <message> (<hint>)` on one stderr line, then
exit 2 (bad input or arguments) or 1 (the work ran and some of it failed)."""

from __future__ import annotations

import sys

import typer


def error_line(message: str) -> None:
    """One line on stderr, never wrapped, so scripts and people can grep it."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)


def fail(problem: str | Exception, code: int = 2, *, hint: str | None = None) -> typer.Exit:
    """Print one error line (a domain error brings its own hint) and return the Exit to
    raise: `raise fail(...)`."""
    message = str(problem)
    error_line(f"{message} ({hint})" if hint else message)
    return typer.Exit(code)
