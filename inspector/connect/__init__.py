"""Camera adapters: bring frames from the line to a running server's HTTP API."""

from inspector.connect.folder import FolderConfig, HotFolder, HotFolderError

__all__ = ["FolderConfig", "HotFolder", "HotFolderError"]
