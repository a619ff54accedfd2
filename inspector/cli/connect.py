"""`inspector connect folder|stream`: camera adapters in front of a running server."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from inspector.cli.errors import fail

connect_app = typer.Typer(help="Connect line cameras to a running server.",
                          no_args_is_help=True)


def run_until_stopped(run: Callable[[threading.Event], None], started: str) -> None:
    """Run an adapter until Ctrl-C or SIGTERM (or its own end). The server refusing the key,
    role or station: exit 1; another setup problem found while running: exit 2."""
    from inspector.connect.client import ConnectError, ServerRefusedError

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(started, err=True)
    try:
        run(stop)
    except ServerRefusedError as exc:
        raise fail(exc, 1, hint="check --key, its role (camera) and --station") from exc
    except ConnectError as exc:
        raise fail(exc) from exc


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
    try:
        from inspector.connect import ConnectError, FolderConfig, HotFolder
    except ImportError as exc:
        raise fail(exc) from exc

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        hot = HotFolder(FolderConfig(watch=watch, station=station, url=url, key=key,
                                     part_id_pattern=part_id_pattern, done=done,
                                     failed=failed, settle_s=settle))
    except ConnectError as exc:
        raise fail(exc) from exc
    run_until_stopped(hot.run, f"watching {hot.watch} for station {station} -> {url}")
    typer.echo(f"stopped; {hot.judged} file(s) judged", err=True)


def stream(
    station: Annotated[str, typer.Option(help="Station the frames belong to.")],
    trigger: Annotated[str, typer.Option(
        help="Which frames are judged: rate:<fps> (a fixed rate), motion (a part arrives in "
             "--roi and comes to rest), mqtt:<topic> (a message on --mqtt-url; its payload "
             "may carry the part id, as {\"part_id\": ...} or plain text) or opcua:<node id> "
             "(a change of a variable on --opcua-url: a Boolean's false->true edge, a counter's "
             "rise, a String's new value as the part id; e.g. opcua:ns=2;s=PartPresent, or "
             "opcua:nsu=<namespace URI>;s=<name> with the namespace looked up by URI).")],
    key: Annotated[str, typer.Option(
        "--key", envvar="INSPECTOR_CAMERA_KEY",
        help="Camera API key (also INSPECTOR_CAMERA_KEY).")],
    url: Annotated[str | None, typer.Option(
        help="Stream URL: rtsp://, http:// (MJPEG), ... Reconnected when it drops.")] = None,
    file: Annotated[Path | None, typer.Option(
        help="A video file, read once on its own timeline.", exists=True, dir_okay=False)] = None,
    device: Annotated[int | None, typer.Option(
        help="Local capture device number (USB camera: 0 is /dev/video0).", min=0)] = None,
    server: Annotated[str, typer.Option(help="The server.")] = "http://127.0.0.1:8000",
    roi: Annotated[str | None, typer.Option(
        help="x,y,w,h: the region the motion trigger watches (default the whole frame).")
    ] = None,
    settle: Annotated[float, typer.Option(
        help="motion: seconds the region must stay still before the frame is taken.",
        min=0.0)] = 0.3,
    motion_threshold: Annotated[float, typer.Option(
        help="motion: share of the region's pixels that must change to count.",
        min=0.001, max=1.0)] = 0.05,
    mqtt_url: Annotated[str, typer.Option(
        envvar="INSPECTOR_MQTT_URL", help="mqtt: the broker (also INSPECTOR_MQTT_URL).")
    ] = "mqtt://127.0.0.1:1883",
    opcua_url: Annotated[str | None, typer.Option(
        envvar="INSPECTOR_OPCUA_URL",
        help="opcua: the server, opc.tcp://host:4840/path (also INSPECTOR_OPCUA_URL).")
    ] = None,
    opcua_user: Annotated[str | None, typer.Option(
        help="opcua: user name; anonymous without it.")] = None,
    opcua_password: Annotated[str | None, typer.Option(
        envvar="INSPECTOR_OPCUA_PASSWORD", show_default=False,
        help="opcua: the user's password; better set INSPECTOR_OPCUA_PASSWORD (a command "
             "line is visible to other users of the machine).")] = None,
    part_id: Annotated[str, typer.Option(
        help="Part id when the trigger gives none: {station}, {seq} (frame number in this "
             "run), {time} (UTC).")] = "{station}-{time}",
    queue: Annotated[int, typer.Option(
        help="Frames that may wait for the server; beyond, the oldest is dropped.",
        min=1, max=1000)] = 8,
    jpeg_quality: Annotated[int, typer.Option(min=1, max=100)] = 90,
    max_backoff: Annotated[float, typer.Option(
        help="Longest wait between reconnects and between retries to the server, seconds.",
        min=0.5)] = 30.0,
    stats_every: Annotated[float, typer.Option(
        help="Seconds between counter log lines.", min=1.0)] = 60.0,
) -> None:
    """Judge frames of a video stream, file or camera device, picked by a trigger.

    Each picked frame goes to POST /v1/inspect as JPEG. A lost stream is reopened with a
    growing wait; frames wait in a bounded queue while the server is away (the oldest is
    dropped when it is full). Counters are logged every --stats-every seconds and printed
    on stop (Ctrl-C, SIGTERM, or the end of a --file).

    Example:

        INSPECTOR_CAMERA_KEY=... inspector connect stream --station s1 \\
            --url rtsp://cam1.local/stream1 --trigger motion --roi 200,100,640,480

        INSPECTOR_OPCUA_PASSWORD=... inspector connect stream --station s1 --device 0 \\
            --trigger 'opcua:ns=3;s="DB_Line"."PartPresent"' \\
            --opcua-url opc.tcp://plc1:4840 --opcua-user camera
    """
    from inspector.connect.client import ConnectError
    from inspector.connect.motion import Roi
    from inspector.connect.source import SourceSpec
    from inspector.connect.stream import StreamAdapter, StreamConfig, TriggerOptions, make_trigger

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    quiet_opencv()
    try:
        spec = SourceSpec(url=url, file=file, device=device)
        opts = TriggerOptions(roi=Roi.parse(roi) if roi is not None else None, settle_s=settle,
                              motion_threshold=motion_threshold, mqtt_url=mqtt_url,
                              opcua_url=opcua_url, opcua_user=opcua_user,
                              opcua_password=opcua_password, max_backoff_s=max_backoff)
        adapter = StreamAdapter(StreamConfig(
            source=spec, station=station, server=server, key=key,
            trigger=make_trigger(trigger, opts), part_id=part_id, queue_size=queue,
            jpeg_quality=jpeg_quality, max_backoff_s=max_backoff, stats_every_s=stats_every))
        adapter.source.open()
    except (ValueError, ConnectError) as exc:
        raise fail(exc) from exc
    try:
        run_until_stopped(adapter.run, f"reading {spec} for station {station} -> {server}")
    finally:
        typer.echo(f"stopped; {adapter.counters.line()}", err=True)


def quiet_opencv() -> None:
    """OpenCV's and FFmpeg's own warnings repeat on every reconnect try: the adapter logs
    each outage once instead."""
    import os

    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
