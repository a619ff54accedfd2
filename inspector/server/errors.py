"""HTTP-facing domain errors and the one place that maps every error to a JSON answer.

Body shape: `{"error": {"status": 413, "type": "ImageTooLargeError", "message": "...",
"hint": "..."}}`. Bad input is always a 4xx; a 500 means a bug and names a log reference.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from inspector.core.errors import InspectorError

log = logging.getLogger(__name__)


class UnknownStationError(InspectorError):
    status_code = 404


class NotFoundError(InspectorError):
    status_code = 404


class ConflictError(InspectorError):
    """The request clashes with the current state (a duplicate version, nothing to promote)."""

    status_code = 409


class UnsupportedMediaTypeError(InspectorError):
    status_code = 415


class PayloadTooLargeError(InspectorError):
    status_code = 413


class AuthenticationError(InspectorError):
    status_code = 401


class ForbiddenError(InspectorError):
    status_code = 403


class ServerBusyError(InspectorError):
    """The queue for a model is full; the camera should retry after `retry_after_s`."""

    status_code = 503

    def __init__(self, message: str, *, hint: str | None = None, retry_after_s: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


class ServiceUnavailableError(InspectorError):
    status_code = 503


def error_body(status: int, kind: str, message: str, hint: str | None = None) -> dict[str, object]:
    return {"error": {"status": status, "type": kind, "message": message, "hint": hint}}


def _headers(exc: InspectorError) -> dict[str, str]:
    if isinstance(exc, ServerBusyError):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, AuthenticationError):
        return {"WWW-Authenticate": "Bearer"}
    return {}


def install_error_handlers(app: FastAPI, on_error: Callable[[int], None] | None = None) -> None:
    """Register handlers so every error leaves as the same JSON shape."""

    def count(status: int) -> None:
        if on_error is not None:
            on_error(status)

    @app.exception_handler(InspectorError)
    async def _domain(request: Request, exc: InspectorError) -> JSONResponse:
        count(exc.status_code)
        if exc.status_code >= 500 and not isinstance(exc, ServerBusyError):
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            error_body(exc.status_code, type(exc).__name__, exc.message, exc.hint),
            status_code=exc.status_code,
            headers=_headers(exc),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        count(422)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        )
        return JSONResponse(
            error_body(422, "ValidationError", f"invalid request: {problems}",
                       "see /docs for the parameters this endpoint takes"),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        count(exc.status_code)
        hint = "see /docs for the API" if exc.status_code in (404, 405) else None
        return JSONResponse(
            error_body(exc.status_code, "HTTPError", str(exc.detail), hint),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        count(500)
        ref = uuid.uuid4().hex[:12]
        log.exception("unhandled error ref=%s on %s %s", ref, request.method, request.url.path)
        return JSONResponse(
            error_body(500, "InternalError", f"internal error (log reference {ref})",
                       "this is a bug: report it with the log reference"),
            status_code=500,
        )
