"""Answering with an inspection's image or heatmap: from this node's disk, else (fleet
storage) from the copy in the shared database, so any node shows any flagged frame."""

from __future__ import annotations

from fastapi.responses import FileResponse, Response

from inspector.server.deps import Services
from inspector.store import artifact_blobs
from inspector.store.artifacts import MEDIA_TYPES

_CACHE = {"Cache-Control": "private, max-age=3600"}


def artifact_response(services: Services, key: str) -> Response | None:
    """The artifact stored under `key`, or None when neither this node nor the fleet has it
    (blocking: call from a worker thread)."""
    media = MEDIA_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")
    path = services.artifacts.path(key)
    if path.is_file():
        return FileResponse(path, media_type=media, headers=_CACHE)
    if services.settings.shares_storage:
        data = artifact_blobs.read(services.db, key)
        if data is not None:
            return Response(data, media_type=media, headers=_CACHE)
    return None
