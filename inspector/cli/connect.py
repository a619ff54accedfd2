"""`inspector connect folder`: camera adapters in front of a running server."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from inspector.cli.errors import fail

connect_app = typer.Typer(help="Connect line cameras to a running server.",
                          no_args_is_help=True)


def folder(
    watch: Annotated[Path, typer.Option(
        "--watch", help="Folder the camera writes image files into.", exists=True,
        file_okay=False, dir_okay=True)],
    station: Annotated[str, typer.Option(help="Station the frames belong to.")],
    key: Annotated[str, typer.Option(
        "--key", envvar="INSPECTOR_CAMERA_KEY",
        help="Camera API key (also INSPECTOR_CAMERA_KEY).")],
    url: Annotated[str, typer.Option(help="The server.")] = "http://127.0.0.1:8000",
    part_id_pattern: Annotated[str | None, typer.Option(
        "--part-id-pattern",
        help="Regex on the file name; its group `part` (or the whole match) is the part id. "
             "Default: the file name without suffix.")] = None,
    done: Annotated[Path | None, typer.Option(
        help="Where judged files go (default WATCH/done).")] = None,
    failed: Annotated[Path | None, typer.Option(
        help="Where files the server refused go (default WATCH/failed).")] = None,
    settle: Annotated[float, typer.Option(
        help="Seconds a file's size must stay unchanged before it is sent.", min=0.0)] = 0.5,
) -> None:
    """Judge every image file written into a folder, then move it to done/ or failed/.

    Each file gets `<name>.json` beside it: the server's answer (or error), station, part id
    and time. Files already in the folder are judged first; restarting never judges a file
    twice. Stop with Ctrl-C.

    Example:

        INSPECTOR_CAMERA_KEY=... inspector connect folder --watch /srv/cam1 --station s1 \\
            --url http://127.0.0.1:8000 --part-id-pattern '^(?P<part>[A-Z0-9-]+)_'
    """
    from inspector.connect import FolderConfig, HotFolder, HotFolderError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        hot = HotFolder(FolderConfig(watch=watch, station=station, url=url, key=key,
                                     part_id_pattern=part_id_pattern, done=done,
                                     failed=failed, settle_s=settle))
    except HotFolderError as exc:
        raise fail(exc) from exc
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(f"watching {hot.watch} for station {station} -> {url}", err=True)
    try:
        hot.run(stop)
    except HotFolderError as exc:
        raise fail(exc, 1, hint="check --key, its role (camera) and --station") from exc
    typer.echo(f"stopped; {hot.judged} file(s) judged", err=True)
