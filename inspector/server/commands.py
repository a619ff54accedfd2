"""`inspector serve`, `inspector demo`, `inspector keys ...` and `inspector bench`, registered on
the main CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="TOML or JSON settings file (also INSPECTOR_CONFIG).")]
DataOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="State folder (database, artifacts); default ./inspector-data.")]
DbOpt = Annotated[str | None, typer.Option(
    "--database-url", help="sqlite:///PATH or postgresql://USER@HOST/DB.")]


def _settings(config: Path | None, **overrides: Any) -> Any:
    from pydantic import ValidationError

    from inspector.settings import load_settings

    try:
        return load_settings(config, **overrides)
    except (ValidationError, ValueError) as exc:
        console.print(f"[red]error:[/red] invalid settings: {exc}", highlight=False)
        raise typer.Exit(2) from exc


def _database(config: Path | None, data_dir: Path | None, database_url: str | None) -> Any:
    from inspector.store.db import Database

    s = _settings(config, data_dir=data_dir, database_url=database_url)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(s.resolved_database_url)
    db.migrate()
    return db


def serve(
    models: Annotated[Path | None, typer.Option("--models", help="Model packages folder.")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    config: ConfigOpt = None,
    data_dir: DataOpt = None,
    database_url: DbOpt = None,
    mqtt_url: Annotated[str | None, typer.Option(help="mqtt://host:1883 to publish to.")] = None,
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="Switch API keys off (loopback hosts only).")] = False,
) -> None:
    """Run the edge inference server.

    Examples:

        inspector serve --models models/ --port 8000

        INSPECTOR_MQTT_URL=mqtt://127.0.0.1:1883 INSPECTOR_STATIONS='{"s1": "tiles:3"}' \\
            inspector serve --host 0.0.0.0
    """
    import uvicorn

    from inspector.server.app import create_app
    from inspector.server.logs import configure_logging
    from inspector.server.transport import server_options

    settings = _settings(config, models_dir=models, host=host, port=port, data_dir=data_dir,
                         database_url=database_url, mqtt_url=mqtt_url,
                         auth_enabled=False if no_auth else None)
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                access_log=settings.access_log, timeout_graceful_shutdown=10,
                **server_options(settings))


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="camera, reviewer or admin.")],
    name: Annotated[str, typer.Option(help="Who or what holds the key.")] = "",
    station: Annotated[list[str] | None, typer.Option(
        help="Camera keys only: a station this key may post for (repeat for several); "
             "without it the key posts for any station.")] = None,
    config: ConfigOpt = None,
    data_dir: DataOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create an API key; the key is printed once, as the last line.

    Example: KEY=$(inspector keys create --role camera --name cam-3 --station press-1 | tail -n1)
    """
    from inspector.store.keys import ROLES, create_key, normalise_stations

    if role not in ROLES:
        console.print(f"[red]error:[/red] unknown role {role!r}: use {', '.join(ROLES)}")
        raise typer.Exit(2)
    try:
        stations = normalise_stations(station)
        if stations is not None and role != "camera":
            raise ValueError(f"--station limits camera keys only, not {role} keys: leave it out")
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    info, key = create_key(_database(config, data_dir, database_url), role, name, stations)
    scope = f" for station(s) {', '.join(info.stations)}" if info.stations else ""
    console.print(f"created {info.role} key {info.prefix} ({info.name}){scope}; store it now, "
                  "it is not shown again", highlight=False)
    print(key)


@keys_app.command("list")
def keys_list(config: ConfigOpt = None, data_dir: DataOpt = None,
              database_url: DbOpt = None) -> None:
    """List keys (prefix, role, name, stations, revoked); never the secrets."""
    from inspector.store.keys import list_keys

    table = Table("prefix", "role", "name", "stations", "revoked")
    for k in list_keys(_database(config, data_dir, database_url)):
        table.add_row(k.prefix, k.role, k.name, ",".join(k.stations) if k.stations else "any",
                      "yes" if k.revoked else "")
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="The key's prefix (see list).")],
                config: ConfigOpt = None, data_dir: DataOpt = None,
                database_url: DbOpt = None) -> None:
    """Revoke a key by prefix (servers stop accepting it within seconds)."""
    from inspector.store.keys import revoke_key

    if not revoke_key(_database(config, data_dir, database_url), prefix):
        console.print(f"[red]error:[/red] no key with prefix {prefix}")
        raise typer.Exit(1)
    console.print(f"revoked {prefix}")


def bench(
    model_dir: Annotated[Path | None, typer.Argument(help="Package to run in-process.")] = None,
    images: Annotated[list[Path] | None, typer.Option(
        "--images", help="Image files or folders (default: synthetic 640x480 JPEGs).")] = None,
    server: Annotated[str | None, typer.Option(help="URL of a running server.")] = None,
    clients: Annotated[int, typer.Option(help="Concurrent clients against the server.")] = 8,
    seconds: Annotated[float, typer.Option(help="Measuring time per run.")] = 15.0,
    station: Annotated[str, typer.Option(help="Station to post to.")] = "bench",
    key: Annotated[str | None, typer.Option(
        help="API key (camera).", envvar="INSPECTOR_KEY")] = None,
    providers: Annotated[str, typer.Option(help="auto, cpu, cuda (in-process).")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Measure images/s and latency of a package in-process and/or of a running server.

    In-process: decode + resize + ONNX Runtime at batch 1 and 8 (one loop, ONNX Runtime's
    own threading), and, on a CPU with several cores, several loops sharing one session with
    the cores split between them as the server does. Server: N concurrent clients posting the
    images over keep-alive HTTP/1.1, each waiting for its answer before sending the next. The
    ratio printed is the server against the best in-process figure.

    Examples:

        inspector bench models/tiles/1 --images ../shared/data/mtd/test

        inspector bench models/tiles/1 --images frames/ --server http://127.0.0.1:8000 --key K
    """
    from inspector.server import bench as b

    if model_dir is None and server is None:
        console.print("[red]error:[/red] give a MODEL_DIR, --server URL, or both")
        raise typer.Exit(2)
    blobs = b.load_images(images) if images else b.synthetic_jpegs()
    if not blobs:
        console.print("[red]error:[/red] no images found")
        raise typer.Exit(2)
    results = []
    if model_dir is not None:
        from inspector.core.runtime import plan_threads, uses_gpu

        for batch in (1, 8):
            console.print(f"in-process, batch {batch}, {seconds:.0f} s ...")
            results.append(b.bench_in_process(model_dir, blobs, batch, seconds, providers))
        # The split of the cores the server uses (several single-threaded calls on a CPU).
        plan = plan_threads(gpu=uses_gpu(providers))  # type: ignore[arg-type]
        if plan.workers > 1:
            console.print(f"in-process, {plan.workers} threads, {seconds:.0f} s ...")
            results.append(b.bench_in_process(model_dir, blobs, 1, seconds, providers,
                                              workers=plan.workers,
                                              intra_op_threads=plan.intra_op_threads))
    if server is not None:
        console.print(f"server {server}, {clients} clients, {seconds:.0f} s ...")
        results.append(b.bench_server(server, blobs, clients, seconds, station, key))
    best_local = max((r.images_per_s for r in results if r.name.startswith("in-")), default=None)
    remote = next((r for r in results if r.name.startswith("server")), None)
    ratio = remote.images_per_s / best_local if remote and best_local else None
    if as_json:
        print(json.dumps({"images": len(blobs), "results": [r.as_dict() for r in results],
                          "server_vs_in_process": ratio}))
        return
    table = Table("run", "images/s", "p50 ms", "p95 ms", "p99 ms", "errors",
                  title=f"{len(blobs)} distinct images")
    for r in results:
        fmt = (lambda v: "-" if v is None else f"{v:.1f}")  # noqa: E731
        table.add_row(r.name, f"{r.images_per_s:.1f}", fmt(r.p50_ms), fmt(r.p95_ms),
                      fmt(r.p99_ms), f"{r.errors} {r.error_statuses or ''}")
    Console().print(table)
    if ratio is not None:
        Console().print(f"server / best in-process throughput: {ratio:.2f}")


def demo(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", help="Folder for the data set, model, database and images.")] = Path(
        "inspector-demo"),
    frames: Annotated[int, typer.Option(help="Frames to post once the server is up.",
                                        min=0)] = 24,
) -> None:
    """The whole product on this machine, offline: make a small synthetic data set, train a
    model on it, start the server with the review pages, post some good and defective frames,
    print the URLs and keys, and serve until Ctrl-C.
    Needs the training extra (pip install -e ".\\[train]").

    A first run takes well under a minute on 2 CPU cores; a second run in the same --data-dir
    reuses the data set and model and starts in seconds.

    Examples:

        inspector demo

        inspector demo --port 8080 --data-dir /tmp/inspector-demo
    """
    from inspector.core.errors import InspectorError
    from inspector.server.demo import DemoConfig, run_demo

    try:
        run_demo(DemoConfig(data_dir=data_dir, host=host, port=port, frames=frames))
    except InspectorError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from exc


def register(app: typer.Typer) -> None:
    """Attach the server's commands to the `inspector` CLI."""
    app.command()(serve)
    app.command()(demo)
    app.command()(bench)
    app.add_typer(keys_app, name="keys")
