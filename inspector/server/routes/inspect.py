"""POST /v1/inspect: a camera frame in, a committed verdict out.

The frame is admitted before its body is read (a queue slot of the station's model, and its
Content-Length against the memory budget), so a refused camera hears 503 at once instead of
after uploading the whole frame.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from inspector.core.errors import InspectorError
from inspector.core.names import NAME_PATTERN
from inspector.core.text import check_text
from inspector.lifecycle.errors import UnsupportedMediaTypeError
from inspector.server.deps import CameraDep, ServicesDep
from inspector.server.schemas import InspectResponse, inspect_response

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["inspect"])

_MEDIA_HINT = (
    "send the frame as the raw body with Content-Type image/jpeg (or image/png, ...), or as "
    "multipart/form-data with one file field named image"
)
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "The frame: JPEG, PNG, BMP or TIFF bytes as the raw body, or a multipart "
                   "upload with one file field named `image`.",
    "content": {
        **{media: _BINARY for media in ("image/jpeg", "image/png", "image/bmp", "image/tiff",
                                        "application/octet-stream")},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["image"],
            "properties": {"image": {"type": "string", "format": "binary"}},
        }},
    },
}


class ClientDisconnectedError(InspectorError):
    """The client hung up before sending the whole body; nobody reads the answer."""

    #: nginx's "client closed request": counted apart from real errors.
    status_code = 499


def declared_length(request: Request) -> int | None:
    """The Content-Length header as a number, or None when absent or not a number."""
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


async def read_frame(request: Request, max_bytes: int) -> bytes:
    """The frame bytes from a raw `image/*` body or a multipart upload."""
    try:
        return await _read_frame(request, max_bytes)
    except ClientDisconnect as exc:
        client = request.client.host if request.client else "?"
        log.info("client %s hung up while sending a frame (%s bytes declared)", client,
                 request.headers.get("content-length", "?"))
        raise ClientDisconnectedError("the client closed the connection before sending the "
                                      "whole frame", hint="resend the frame") from exc


async def _read_frame(request: Request, max_bytes: int) -> bytes:
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
    openapi_extra={"requestBody": _REQUEST_BODY},
    responses={
        400: {"description": "Not a decodable image (empty, corrupt, truncated)"},
        401: {"description": "Missing or unknown API key"},
        404: {"description": "Unknown station"},
        413: {"description": "Body, image dimensions or the frame's memory need over the limit"},
        415: {"description": "Wrong Content-Type"},
        422: {"description": "Invalid part_id (control characters, NUL bytes, over 128 "
                             "characters) or a record the database refused"},
        503: {"description": "Queue or memory budget full (see Retry-After), or database "
                             "unavailable"},
    },
)
async def inspect(
    request: Request,
    services: ServicesDep,
    _principal: CameraDep,
    station: Annotated[str, Query(pattern=NAME_PATTERN, description="Station name")],
    part_id: Annotated[str | None, Query(max_length=128, description="Part serial")] = None,
    heatmap: Annotated[Literal["link", "inline"], Query(
        description="`inline` adds the overlay to the answer as a data URL")] = "link",
    idempotency_key: Annotated[str | None, Header(
        max_length=128, description="A key of the client's choosing per frame (for example "
        "a hash of the file): a resend with the same key at the same station is answered "
        "with the recorded verdict (`replayed: true`) instead of a second record")] = None,
) -> InspectResponse:
    """Judge a frame for a station: verdict, score, threshold, model, timings and links.

    Example: `curl -H 'Authorization: Bearer KEY' -H 'Content-Type: image/jpeg'
    --data-binary @part.jpg 'http://127.0.0.1:8000/v1/inspect?station=s1&part_id=A17'`
    """
    check_text(part_id, "part_id", max_length=128)  # before the body: a bad id costs nothing
    check_text(idempotency_key, "Idempotency-Key", max_length=128)
    service = services.inspections
    if idempotency_key and (earlier := await service.replay(station, idempotency_key)):
        services.registry.for_station(station)  # an unknown station is a 404 all the same
        return inspect_response(earlier)
    # Unknown station, full queue or budget: answered before reading the body.
    with service.admit(station, declared_length(request)) as admitted:
        data = await read_frame(request, services.settings.max_body_bytes)
        result = await service.judge(admitted, part_id, data, heatmap == "inline",
                                     idempotency_key or None)
    return inspect_response(result)
