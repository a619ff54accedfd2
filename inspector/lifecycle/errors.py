"""Domain errors of the served models and their life cycle, each with the HTTP status it
maps to; framework-free (inspector.server.errors turns them into JSON answers)."""

from __future__ import annotations

from inspector.core.errors import InspectorError


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


class ServerBusyError(InspectorError):
    """The queue for a model is full; the camera should retry after `retry_after_s`."""

    status_code = 503

    def __init__(self, message: str, *, hint: str | None = None, retry_after_s: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


class ServiceUnavailableError(InspectorError):
    """A dependency (the database, the model registry) is unavailable; retry later.

    `retry_after_s` None: the answer carries the server's `db_retry_after_s`."""

    status_code = 503

    def __init__(self, message: str, *, hint: str | None = None,
                 retry_after_s: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s
