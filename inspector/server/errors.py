"""HTTP-facing domain errors and the one place that maps every error to a JSON answer.

Body shape: `{"error": {"status": 413, "type": "ImageTooLargeError", "message": "...",
"hint": "..."}}`. Bad input is always a 4xx; a 500 means a bug and names a log reference.
An unreachable database is a 503 with Retry-After wherever it surfaces (key lookup, a query,
a commit), logged as one warning line, never a traceback.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from inspector.core.errors import InspectorError
from inspector.lifecycle.errors import ServerBusyError, ServiceUnavailableError
from inspector.store.db import database_unavailable

log = logging.getLogger(__name__)


class AuthenticationError(InspectorError):
    status_code = 401


class ForbiddenError(InspectorError):
    status_code = 403


#: Retry-After for database outages when the app has no settings to ask (tests, startup).
DEFAULT_DB_RETRY_AFTER_S = 5
#: At most one "database unavailable" warning per this many seconds; the rest are counted.
_DB_WARN_EVERY_S = 10.0


class _WarnOnce:
    """Logs the first "unavailable" warning, then one per interval with a count: an outage
    under load is a few log lines, not one (or a traceback) per request."""

    def __init__(self, every_s: float, what: str) -> None:
        self.every_s = every_s
        self.what = what
        self._last = float("-inf")
        self._suppressed = 0
        self._lock = threading.Lock()

    def __call__(self, request: Request, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.every_s:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        log.warning("%s on %s %s: %s: %s%s", self.what, request.method,
                    request.url.path, type(exc).__name__, reason[0] if reason else "",
                    f" ({suppressed} more such answers since the last warning)"
                    if suppressed else "")


class ErrorDetail(BaseModel):
    status: int
    type: str
    message: str
    hint: str | None


class ErrorBody(BaseModel):
    """Every error answer: what went wrong and what to do about it."""

    error: ErrorDetail


def error_responses(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route: each status with its description and the error body."""
    return {status: {"description": text, "model": ErrorBody}
            for status, text in sorted(described.items())}


def error_body(status: int, kind: str, message: str, hint: str | None = None) -> dict[str, object]:
    return {"error": {"status": status, "type": kind, "message": message, "hint": hint}}


def error_response(status: int, kind: str, message: str, hint: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The one JSON shape every error leaves in."""
    return JSONResponse(error_body(status, kind, message, hint), status_code=status,
                        headers=headers)


def _db_retry_after(request: Request) -> int:
    services = getattr(request.app.state, "services", None)
    settings = getattr(services, "settings", None)
    return int(getattr(settings, "db_retry_after_s", DEFAULT_DB_RETRY_AFTER_S))


def _headers(request: Request, exc: InspectorError) -> dict[str, str]:
    if isinstance(exc, ServerBusyError):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, ServiceUnavailableError):
        after = exc.retry_after_s if exc.retry_after_s is not None else _db_retry_after(request)
        return {"Retry-After": str(after)}
    if isinstance(exc, AuthenticationError):
        return {"WWW-Authenticate": "Bearer"}
    return {}


def install_error_handlers(app: FastAPI, on_error: Callable[[int], None] | None = None) -> None:
    """Register handlers so every error leaves as the same JSON shape."""

    def count(status: int) -> None:
        if on_error is not None:
            on_error(status)

    warn_db = _WarnOnce(_DB_WARN_EVERY_S, "database unavailable")
    warn_unavailable = _WarnOnce(_DB_WARN_EVERY_S, "service unavailable")

    @app.exception_handler(InspectorError)
    async def _domain(request: Request, exc: InspectorError) -> JSONResponse:
        count(exc.status_code)
        if isinstance(exc, ServiceUnavailableError):
            warn_unavailable(request, exc)
        elif exc.status_code >= 500 and not isinstance(exc, ServerBusyError):
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return error_response(exc.status_code, type(exc).__name__, exc.message, exc.hint,
                              _headers(request, exc))

    @app.exception_handler(sa_exc.SQLAlchemyError)
    async def _database(request: Request, exc: sa_exc.SQLAlchemyError) -> JSONResponse:
        if not database_unavailable(exc):
            return _internal(request, exc)
        count(503)
        warn_db(request, exc)
        return error_response(
            503, "DatabaseUnavailableError",
            "the database is unavailable; nothing was changed by this request",
            "retry after the Retry-After seconds; check the database (see /readyz)",
            {"Retry-After": str(_db_retry_after(request))})

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        count(422)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        )
        return error_response(422, "ValidationError", f"invalid request: {problems}",
                              "see /docs for the parameters this endpoint takes")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        count(exc.status_code)
        hint = "see /docs for the API" if exc.status_code in (404, 405) else None
        return error_response(exc.status_code, "HTTPError", str(exc.detail), hint,
                              getattr(exc, "headers", None))

    def _internal(request: Request, exc: BaseException) -> JSONResponse:
        count(500)
        ref = uuid.uuid4().hex[:12]
        log.error("unhandled error ref=%s on %s %s", ref, request.method, request.url.path,
                  exc_info=exc)
        return error_response(500, "InternalError", f"internal error (log reference {ref})",
                              "this is a bug: report it with the log reference")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _internal(request, exc)
