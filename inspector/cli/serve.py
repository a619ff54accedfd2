"""`inspector serve` and `inspector keys create | list | revoke`: the edge server and its API
keys, with the settings both read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from inspector.cli.errors import fail

console = Console(stderr=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="TOML or JSON settings file (also INSPECTOR_CONFIG).")]
DataOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="State folder (database, artifacts); default ./inspector-data.")]
DbOpt = Annotated[str | None, typer.Option(
    "--database-url", help="sqlite:///PATH or postgresql://USER@HOST/DB.")]


def settings_or_exit(config: Path | None, **overrides: Any) -> Any:
    """Settings from flags, INSPECTOR_* and the file, or exit with one error line."""
    from pydantic import ValidationError

    from inspector.settings import load_settings

    try:
        return load_settings(config, **overrides)
    except ValidationError as exc:
        raise fail(f"invalid settings: {settings_problems(exc)}") from exc
    except ValueError as exc:
        raise fail(f"invalid settings: {exc}") from exc


def settings_problems(exc: Any) -> str:
    """A settings ValidationError as `field: message; ...`, without the values given: those
    may be passwords and secrets (opcua_users, webhooks), and a log keeps this line."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


def _database(config: Path | None, data_dir: Path | None, database_url: str | None) -> Any:
    from inspector.store.db import Database

    s = settings_or_exit(config, data_dir=data_dir, database_url=database_url)
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

        INSPECTOR_OPCUA_ENDPOINT=opc.tcp://127.0.0.1:4840/inspector \\
            INSPECTOR_OPCUA_USERS='{"plc": "a-long-password"}' inspector serve   # + OPC UA
    """
    import uvicorn

    from inspector.app import create_app
    from inspector.server.logs import configure_logging
    from inspector.server.transport import server_options

    settings = settings_or_exit(config, models_dir=models, host=host, port=port, data_dir=data_dir,
                         database_url=database_url, mqtt_url=mqtt_url,
                         auth_enabled=False if no_auth else None)
    configure_logging(settings.log_level, settings.log_format)
    if settings.opcua_endpoint:
        from inspector.opcua import (
            OpcUaStartError,
            OpcUaUnavailableError,
            check_port_free,
            require_asyncua,
        )

        try:
            require_asyncua()
            check_port_free(settings.opcua_endpoint)
        except (OpcUaUnavailableError, OpcUaStartError) as exc:
            raise fail(exc) from None
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
        raise fail(f"unknown role {role!r}: use {', '.join(ROLES)}")
    try:
        stations = normalise_stations(station)
        if stations is not None and role != "camera":
            raise ValueError(f"--station limits camera keys only, not {role} keys: leave it out")
    except ValueError as exc:
        raise fail(exc) from None
    info, key = create_key(_database(config, data_dir, database_url), role, name, stations)
    scope = f" for station(s) {', '.join(info.stations)}" if info.stations else ""
    console.print(f"created {info.role} key {info.prefix} ({info.name}){scope}; store it now, "
                  "it is not shown again", highlight=False, markup=False)
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
        raise fail(f"no key with prefix {prefix}", code=1)
    console.print(f"revoked {prefix}", markup=False)
