"""`inspector demo`: the whole product on this machine (the steps live in inspector.demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from inspector.cli.errors import fail
from inspector.core.errors import InspectorError


def demo(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", help="Folder for the data set, model, database, keys and images.")] = Path(
        "inspector-demo"),
    frames: Annotated[int, typer.Option(help="Frames to post once the server is up.",
                                        min=0)] = 24,
    opcua_port: Annotated[int, typer.Option(
        help="Port of the OPC UA endpoint on 127.0.0.1 (0: none).", min=0, max=65535)] = 4840,
) -> None:
    """The whole product on this machine, offline: make a small synthetic data set, train a
    model on it, start the server with the review pages, post some good and defective frames,
    print the URLs and keys, and serve until Ctrl-C.
    Needs the training extra (pip install -e ".\\[train]").

    With the `connect` extra, the demo also serves an OPC UA endpoint (user `demo`, password in
    DIR/demo-opcua.json) and judges images dropped into DIR/watch for station press-1.

    A first run takes well under a minute on 2 CPU cores; a second run in the same --data-dir
    reuses the data set, model, keys (DIR/demo-keys.json) and posted frames and starts in
    seconds. DIR holds the database where --data-dir puts it for every command:
    `inspector keys create --role reviewer --data-dir DIR` makes a key the demo accepts.

    Examples:

        inspector demo

        inspector demo --port 8080 --data-dir /tmp/inspector-demo
    """
    from inspector.demo import DemoConfig, run_demo

    try:
        run_demo(DemoConfig(data_dir=data_dir, host=host, port=port, frames=frames,
                            opcua_port=opcua_port))
    except InspectorError as exc:
        raise fail(exc) from exc
