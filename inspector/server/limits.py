"""An ASGI middleware that caps request bodies: 413 before reading when Content-Length is too
big, and while streaming when a chunked body grows past the limit."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inspector.server.errors import PayloadTooLargeError, error_body


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int,
                 on_reject: Callable[[int], None] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self._on_reject = on_reject

    def _error(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"request body is over the limit of {self.max_bytes} bytes",
            hint="send smaller frames (compress as JPEG) or raise max_body_bytes in settings",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._error()
            return message

        await self.app(scope, limited, send)

    async def _reject(self, send: Send) -> None:
        exc = self._error()
        if self._on_reject:
            self._on_reject(413)
        body = json.dumps(error_body(413, type(exc).__name__, exc.message, exc.hint)).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
