"""An OPC UA server inside `inspector serve`, for PLCs and SCADA: each station's last verdict,
score, counts and more as read-only variables, updated on every committed verdict.

Optional: it needs the `opcua` extra (asyncua), imported only when `opcua_endpoint` is set, so
a server without it starts as before. See README "OPC UA" for the namespace and security.
"""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from inspector.opcua.errors import OpcUaStartError, OpcUaUnavailableError
from inspector.opcua.feed import StationUpdate, VerdictFeed
from inspector.settings import Settings

if TYPE_CHECKING:
    from inspector.opcua.server import OpcUaServer

__all__ = ["OpcUaStartError", "OpcUaUnavailableError", "StationUpdate", "VerdictFeed",
           "check_port_free", "require_asyncua", "start_opcua"]


def require_asyncua() -> None:
    """Raise OpcUaUnavailableError, saying what to install, when asyncua is missing."""
    if importlib.util.find_spec("asyncua") is None:
        raise OpcUaUnavailableError(
            "opcua_endpoint is set but the OPC UA library (asyncua) is not installed",
            hint="pip install 'inspector[opcua]', or unset opcua_endpoint")


def check_port_free(endpoint: str) -> None:
    """Raise OpcUaStartError when the endpoint's address cannot be bound (a port in use, an
    address not on this machine): said in one line before the server starts, instead of the
    OPC UA library's and the web server's tracebacks from inside the start."""
    url = urlsplit(endpoint)
    host, port = url.hostname or "", url.port or 0
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise OpcUaStartError(f"opcua_endpoint {endpoint}: cannot resolve {host!r} ({exc})",
                              hint="give an address or host name of this machine") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio binds
            try:
                probe.bind(address)
            except OSError as exc:
                raise OpcUaStartError(
                    f"opcua_endpoint {endpoint}: cannot listen on {address[0]} port {port} "
                    f"({exc.strerror or exc})",
                    hint="choose a free port (is another server using it?) or an address "
                         "of this machine") from None


def start_opcua(settings: Settings, feed: VerdictFeed, stations: list[str],
                models: Callable[[], list[str]]) -> OpcUaServer:
    """Start the OPC UA server (blocking until it listens) with nodes for `stations`;
    `feed` brings it committed verdicts, `models` lists the loaded models."""
    require_asyncua()
    from inspector.opcua.server import OpcUaServer

    server = OpcUaServer(settings, feed, stations, models)
    server.start()
    return server
