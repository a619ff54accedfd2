"""POST /v1/inspect: a camera frame in, a committed verdict out."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile

from inspector.server.deps import CameraDep, ServicesDep
from inspector.server.errors import UnsupportedMediaTypeError
from inspector.server.schemas import InspectResponse
from inspector.settings import SAFE_NAME

router = APIRouter(prefix="/v1", tags=["inspect"])

_MEDIA_HINT = (
    "send the frame as the raw body with Content-Type image/jpeg (or image/png, ...), or as "
    "multipart/form-data with one file field named image"
)


async def read_frame(request: Request, max_bytes: int) -> bytes:
    """The frame bytes from a raw `image/*` body or a multipart upload."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        return await request.body()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=4, max_fields=16, max_part_size=max_bytes)
        try:
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            preferred = [f for k, f in form.multi_items()
                         if isinstance(f, UploadFile) and k in ("image", "file", "frame")]
            candidates = preferred or files
            if not candidates:
                raise UnsupportedMediaTypeError("multipart body has no file part",
                                                hint=_MEDIA_HINT)
            return await candidates[0].read()
        finally:
            await form.close()
    raise UnsupportedMediaTypeError(
        f"unsupported Content-Type {ctype or '(none)'!r} for a frame", hint=_MEDIA_HINT
    )


@router.post(
    "/inspect",
    response_model=InspectResponse,
    summary="Judge one frame",
    responses={
        400: {"description": "Not a decodable image (empty, corrupt, truncated)"},
        401: {"description": "Missing or unknown API key"},
        404: {"description": "Unknown station"},
        413: {"description": "Body or image dimensions over the limit"},
        415: {"description": "Wrong Content-Type"},
        503: {"description": "Queue full (see Retry-After) or database unavailable"},
    },
)
async def inspect(
    request: Request,
    services: ServicesDep,
    _principal: CameraDep,
    station: Annotated[str, Query(pattern=SAFE_NAME, description="Station name")],
    part_id: Annotated[str | None, Query(max_length=128, description="Part serial")] = None,
    heatmap: Annotated[Literal["link", "inline"], Query(
        description="`inline` adds the overlay to the answer as a data URL")] = "link",
) -> InspectResponse:
    """Judge a frame for a station: verdict, score, threshold, model, timings and links.

    Example: `curl -H 'Authorization: Bearer KEY' -H 'Content-Type: image/jpeg'
    --data-binary @part.jpg 'http://127.0.0.1:8000/v1/inspect?station=s1&part_id=A17'`
    """
    services.registry.for_station(station)  # unknown station: answer before reading the body
    data = await read_frame(request, services.settings.max_body_bytes)
    return await services.inspections.inspect(station, part_id, data, heatmap == "inline")
