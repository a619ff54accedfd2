"""Connection deadlines for uvicorn: a client must send a request's head (request line and
headers) within `header_timeout_s` and keep its body coming, with no gap longer than
`body_timeout_s`; otherwise the server answers 408 (when it can) and closes the connection.

uvicorn itself only times out idle keep-alive connections: a client that opens a connection
and sends half a request line, or a Content-Length larger than the body it sends, holds a file
descriptor and a protocol object for ever. The two protocol classes here are uvicorn's own
(httptools and h11) with two timers added:

- the head timer starts when the connection opens (and when a later request on a keep-alive
  connection sends its first byte) and stops when the headers are complete;
- the body timer starts when the headers are complete and restarts on every chunk of body,
  until the body is complete.

Time while the server itself has paused reading (the app is not consuming the body yet, or
pipelined requests wait their turn), or while the client waits for `100 Continue`, does not
count against the client.

`inspector serve` uses `server_options()`, which also sets uvicorn's keep-alive timeout and
`limit_concurrency` (requests on connections beyond `max_connections` answer 503). When
starting the app with uvicorn's own command instead, pass the protocol there to get the
same protection with the default timeouts (10 s head, 30 s body):

    uvicorn --factory inspector.app:create_app \\
        --http inspector.server.transport:HttpToolsWithDeadlines \\
        --timeout-keep-alive 5 --limit-concurrency 1000
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from inspector.server.errors import error_body
from inspector.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 30.0


def _timeout_response(message: str, hint: str) -> bytes:
    body = json.dumps(error_body(408, "RequestTimeout", message, hint)).encode()
    head = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n")
    return head + body


_HEAD_408 = _timeout_response(
    "the request's headers did not arrive in time",
    "send the request line and all headers at once; the server closes connections that stall")
_BODY_408 = _timeout_response(
    "the request body stopped arriving before it was complete",
    "send a body exactly as long as Content-Length, without long pauses")


class _Conn(Protocol):
    """What the timers need from a uvicorn HTTP protocol object (both implementations)."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    flow: Any
    cycle: Any


class _Deadlines:
    """The head and body timers of one connection."""

    def __init__(self, conn: _Conn, header_s: float, body_s: float) -> None:
        self._conn = conn
        self._header_s = header_s
        self._body_s = body_s
        self._head: asyncio.TimerHandle | None = None
        self._body: asyncio.TimerHandle | None = None
        #: Bytes of the current request's head have arrived (a 408 then makes sense).
        self.head_started = False

    def await_head(self, started: bool) -> None:
        """A request's head is due: arm the head timer unless it runs already."""
        self.head_started = self.head_started or started
        if self._head is None:
            self._head = self._conn.loop.call_later(self._header_s, self._head_expired)

    def head_done(self) -> None:
        self.head_started = False
        if self._head is not None:
            self._head.cancel()
            self._head = None

    def body_progress(self) -> None:
        """Headers complete or a chunk of body arrived: the next chunk is due in time."""
        if self._body is not None:
            self._body.cancel()
        self._body = self._conn.loop.call_later(self._body_s, self._body_expired)

    def body_done(self) -> None:
        if self._body is not None:
            self._body.cancel()
            self._body = None

    def stop(self) -> None:
        self.head_done()
        self.body_done()

    def _server_waits(self) -> bool:
        """True while the delay is ours, not the client's."""
        cycle = self._conn.cycle
        return bool(self._conn.flow is not None and self._conn.flow.read_paused) or bool(
            cycle is not None and getattr(cycle, "waiting_for_100_continue", False))

    def _head_expired(self) -> None:
        self._head = None
        if self._conn.transport.is_closing():
            return
        if self._server_waits():
            self.await_head(False)
            return
        log.debug("closing a connection whose request headers did not arrive in %.1f s",
                  self._header_s)
        self._close(_HEAD_408 if self.head_started else None)

    def _body_expired(self) -> None:
        self._body = None
        if self._conn.transport.is_closing():
            return
        if self._server_waits():
            self.body_progress()
            return
        log.debug("closing a connection whose request body stalled for %.1f s", self._body_s)
        cycle = self._conn.cycle
        started = cycle is None or cycle.response_started
        if cycle is not None:  # the app's receive() now answers http.disconnect
            cycle.disconnected = True
            cycle.message_event.set()
        self._close(None if started else _BODY_408)

    def _close(self, answer: bytes | None) -> None:
        self.stop()
        if answer is not None:
            self._conn.transport.write(answer)
        self._conn.transport.close()


class _WithDeadlines:
    """The timers' life cycle, shared by both protocol classes below (put first in the bases,
    so its methods wrap uvicorn's)."""

    header_timeout_s = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s = DEFAULT_BODY_TIMEOUT_S
    deadlines: _Deadlines

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.deadlines = _Deadlines(self, self.header_timeout_s,  # type: ignore[arg-type]
                                    self.body_timeout_s)
        super().connection_made(transport)  # type: ignore[misc]
        self.deadlines.await_head(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadlines.stop()
        super().connection_lost(exc)  # type: ignore[misc]


class H11WithDeadlines(_WithDeadlines, H11Protocol):
    """uvicorn's h11 protocol (pure Python) with head and body timeouts."""

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self.deadlines.await_head(bool(data))
        super().data_received(data)
        self._track_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track_state()  # a pipelined request may have started (or finished its head)

    def _track_state(self) -> None:
        state = self.conn.their_state
        if state is h11.IDLE:
            return
        self.deadlines.head_done()
        if state is h11.SEND_BODY:
            self.deadlines.body_progress()
        else:
            self.deadlines.body_done()


class HttpToolsWithDeadlines(_WithDeadlines, HttpToolsProtocol):
    """uvicorn's httptools protocol (the fast C parser) with head and body timeouts."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.deadlines.await_head(True)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.deadlines.head_done()
        self.deadlines.body_progress()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self.deadlines.body_progress()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.deadlines.body_done()


_IMPLEMENTATIONS: dict[str, type[H11WithDeadlines] | type[HttpToolsWithDeadlines]] = {
    "httptools": HttpToolsWithDeadlines, "h11": H11WithDeadlines,
}


def protocol_class(header_timeout_s: float, body_timeout_s: float,
                   implementation: str = "httptools") -> type[asyncio.Protocol]:
    """A protocol class (`httptools` or `h11`) with these timeouts."""
    if implementation not in _IMPLEMENTATIONS:
        raise ValueError(f"unknown HTTP implementation {implementation!r}: httptools or h11")
    base = _IMPLEMENTATIONS[implementation]
    return type(base.__name__, (base,), {"header_timeout_s": header_timeout_s,
                                         "body_timeout_s": body_timeout_s})


def server_options(settings: Settings) -> dict[str, Any]:
    """`uvicorn.run` keywords for `inspector serve`: deadlines, keep-alive, connection limit."""
    return {
        "http": protocol_class(settings.header_timeout_s, settings.body_timeout_s),
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "limit_concurrency": settings.max_connections,
    }
