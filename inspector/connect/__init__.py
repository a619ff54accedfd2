"""Camera adapters: bring frames from the line to a running server's HTTP API.

The hot folder needs watchdog, an optional extra: it is imported only when asked for, so the
stream adapter (OpenCV and paho-mqtt, both in the base install) works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inspector.connect.client import Answer, ConnectError, InspectClient

if TYPE_CHECKING:
    from inspector.connect.folder import FolderConfig, HotFolder, HotFolderError

_FOLDER = ("FolderConfig", "HotFolder", "HotFolderError")

__all__ = ["Answer", "ConnectError", "FolderConfig", "HotFolder", "HotFolderError",
           "InspectClient"]


def __getattr__(name: str) -> Any:
    """The hot folder's names, imported on first use; a clear ImportError without watchdog."""
    if name not in _FOLDER:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from inspector.connect import folder
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "watchdog":
            raise
        raise ImportError("the hot folder needs the watchdog package: "
                          "pip install 'inspector[folder]'", name=exc.name) from exc
    return getattr(folder, name)
