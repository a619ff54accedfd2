"""The `inspector` command line: one module per command group (inspect, model, dataset,
serve, demo, bench), attached to one typer app in `inspector.cli.app`; every command reports
errors through `inspector.cli.errors`."""

from __future__ import annotations

import sys

from inspector.cli.errors import error_line
from inspector.core.errors import InspectorError


def main() -> None:
    """The `inspector` console script."""
    from inspector.cli.app import app

    try:
        app()
    except InspectorError as exc:
        error_line(str(exc))
        sys.exit(2)
