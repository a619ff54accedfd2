"""An OPC UA server inside `inspector serve`, for PLCs and SCADA: each station's last verdict,
score, counts and more as read-only variables, updated on every committed verdict.

Optional: it needs the `opcua` extra (asyncua), imported only when `opcua_endpoint` is set, so
a server without it starts as before. See README "OPC UA" for the namespace and security.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING

from inspector.opcua.errors import OpcUaStartError, OpcUaUnavailableError
from inspector.opcua.feed import StationUpdate, VerdictFeed
from inspector.settings import Settings

if TYPE_CHECKING:
    from inspector.opcua.server import OpcUaServer

__all__ = ["OpcUaStartError", "OpcUaUnavailableError", "StationUpdate", "VerdictFeed",
           "require_asyncua", "start_opcua"]


def require_asyncua() -> None:
    """Raise OpcUaUnavailableError, saying what to install, when asyncua is missing."""
    if importlib.util.find_spec("asyncua") is None:
        raise OpcUaUnavailableError(
            "opcua_endpoint is set but the OPC UA library (asyncua) is not installed",
            hint="pip install 'inspector[opcua]', or unset opcua_endpoint")


def start_opcua(settings: Settings, feed: VerdictFeed, stations: list[str],
                models: Callable[[], list[str]]) -> OpcUaServer:
    """Start the OPC UA server (blocking until it listens) with nodes for `stations`;
    `feed` brings it committed verdicts, `models` lists the loaded models."""
    require_asyncua()
    from inspector.opcua.server import OpcUaServer

    server = OpcUaServer(settings, feed, stations, models)
    server.start()
    return server
