"""An ASGI middleware that caps request bodies: 413 before reading when Content-Length is too
big, and while streaming when a chunked body grows past the limit."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inspector.lifecycle.errors import PayloadTooLargeError
from inspector.server.errors import error_body

_FRAME_HINT = "send smaller frames (compress as JPEG) or raise max_body_bytes in settings"


class BodyLimitMiddleware:
    """`max_bytes` for every path except those in `path_limits` (path -> (limit, hint)), such
    as model package uploads."""

    def __init__(self, app: ASGIApp, max_bytes: int,
                 on_reject: Callable[[int], None] | None = None,
                 path_limits: dict[str, tuple[int, str]] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self._on_reject = on_reject
        self._path_limits = path_limits or {}

    def _error(self, limit: int, hint: str) -> PayloadTooLargeError:
        return PayloadTooLargeError(f"request body is over the limit of {limit} bytes", hint=hint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, hint = self._path_limits.get(scope.get("path", ""), (self.max_bytes, _FRAME_HINT))
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._reject(send, limit, hint)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self._error(limit, hint)
            return message

        await self.app(scope, limited, send)

    async def _reject(self, send: Send, limit: int, hint: str) -> None:
        exc = self._error(limit, hint)
        if self._on_reject:
            self._on_reject(413)
        body = json.dumps(error_body(413, type(exc).__name__, exc.message, exc.hint)).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
