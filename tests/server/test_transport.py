"""Connection deadlines against a real `inspector serve` over raw sockets: stalled heads and
bodies are closed, half-open connections give their file descriptors back, and normal
requests keep working throughout."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from inspector.server.transport import protocol_class, server_options
from inspector.settings import Settings
from tests.model_factory import make_package
from tests.server.conftest import good_frame
from tests.server.harness import ServerProcess, base_env, create_key, free_port, read_answer

pytestmark = pytest.mark.slow

HEADER_S = 1.0
BODY_S = 1.0
SLACK_S = 4.0  # generous: the machine is shared with other test runs


@dataclass
class Srv:
    process: ServerProcess
    camera: str

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Srv]:
    root = tmp_path_factory.mktemp("transport")
    make_package(root / "models")
    env = base_env(root / "data", INSPECTOR_HEADER_TIMEOUT_S=str(HEADER_S),
                   INSPECTOR_BODY_TIMEOUT_S=str(BODY_S), INSPECTOR_KEEP_ALIVE_TIMEOUT_S="2",
                   INSPECTOR_SAMPLE_PASSES="0", INSPECTOR_MAX_DELAY_MS="5")
    camera = create_key(env, "camera")
    server = ServerProcess(env, root / "models", root / "server.log").start()
    try:
        yield Srv(server, camera)
    finally:
        server.stop()
        print(f"--- server log ---\n{server.log()[-4000:]}")


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=HEADER_S + SLACK_S + 5)
    return sock


def _read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and how long that took."""
    t0 = time.monotonic()
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {time.monotonic() - t0:.1f} s")
    except ConnectionResetError:
        pass
    return b"".join(chunks), time.monotonic() - t0


def _inspect_ok(srv: Srv) -> None:
    r = httpx.post(f"http://127.0.0.1:{srv.port}/v1/inspect?station=s1",
                   headers={"Authorization": f"Bearer {srv.camera}",
                            "Content-Type": "image/jpeg"}, content=good_frame(), timeout=30)
    assert r.status_code == 200, r.text


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_silent_connection_is_closed(srv: Srv) -> None:
    with _connect(srv.port) as sock:
        data, waited = _read_until_closed(sock)
    assert data == b""
    assert waited < HEADER_S + SLACK_S
    _inspect_ok(srv)


def test_half_a_request_line_is_answered_408_and_closed(srv: Srv) -> None:
    with _connect(srv.port) as sock:
        sock.sendall(b"POST /v1/insp")
        data, waited = _read_until_closed(sock)
    assert waited < HEADER_S + SLACK_S
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    _inspect_ok(srv)


def test_headers_trickling_in_are_cut_off_at_the_deadline(srv: Srv) -> None:
    """A slowloris client sends a header line every 0.3 s, for ever: the head deadline is a
    total, so the connection closes within the timeout although bytes keep coming."""
    with _connect(srv.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.3)
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < HEADER_S + SLACK_S:
            try:
                sock.sendall(b"X-Pad: a\r\n")
                if sock.recv(65536) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed, "the server let a client trickle its headers past the deadline"
    _inspect_ok(srv)


def test_body_shorter_than_content_length_is_answered_408(srv: Srv) -> None:
    head = (f"POST /v1/inspect?station=s1 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {srv.camera}\r\nContent-Type: image/jpeg\r\n"
            "Content-Length: 100000\r\n\r\n").encode()
    with _connect(srv.port) as sock:
        sock.sendall(head + b"0123456789")
        data, waited = _read_until_closed(sock)
    assert waited < BODY_S + SLACK_S
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert b"RequestTimeout" in data
    _inspect_ok(srv)


def test_slow_but_steady_body_is_accepted(srv: Srv) -> None:
    """The body deadline is between chunks: an upload taking longer than body_timeout in
    total, with short pauses, still gets its verdict."""
    frame = good_frame(seed=3)
    head = (f"POST /v1/inspect?station=s1 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {srv.camera}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(frame)}\r\nConnection: close\r\n\r\n").encode()
    parts = 5
    step = -(-len(frame) // parts)
    with _connect(srv.port) as sock:
        sock.sendall(head)
        for i in range(parts):
            time.sleep(BODY_S * 0.4)
            sock.sendall(frame[i * step:(i + 1) * step])
        data, _ = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200 "), data[:300]


def test_stalled_second_request_on_keep_alive_connection_is_closed(srv: Srv) -> None:
    with _connect(srv.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = read_answer(sock)  # head and body, which may come in separate reads
        assert first.startswith("HTTP/1.1 200 "), first[:200]
        sock.sendall(b"GET /heal")
        data, waited = _read_until_closed(sock)
    assert waited < HEADER_S + SLACK_S
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]


def test_half_open_connections_are_closed_and_fds_return(srv: Srv) -> None:
    _inspect_ok(srv)
    baseline = _open_fds(srv.pid)
    socks = [_connect(srv.port) for _ in range(300)]
    try:
        for i, s in enumerate(socks):
            if i % 2:
                s.sendall(b"GET / HTTP/1.1\r\nHost:")  # half a head; the other half send nothing
        deadline = time.monotonic() + SLACK_S
        while _open_fds(srv.pid) < baseline + 250 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _open_fds(srv.pid) >= baseline + 250, "the server did not accept them all"
        _inspect_ok(srv)  # a normal camera request still gets its verdict meanwhile
        t0 = time.monotonic()
        for s in socks:
            _read_until_closed(s)
        assert time.monotonic() - t0 < HEADER_S + SLACK_S + 2
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + SLACK_S
    while _open_fds(srv.pid) > baseline + 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _open_fds(srv.pid) <= baseline + 5
    _inspect_ok(srv)


# --- the h11 implementation and the connection limit, on an in-process uvicorn ------------


async def _hello(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()  # type: ignore[operator]
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


@pytest.fixture(params=["h11", "httptools"])
def small_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    """uvicorn in a thread with the deadline protocol, as `inspector serve` configures it,
    except for the implementation and a connection limit of 8."""
    port = free_port()
    settings = Settings(data_dir=tmp_path, port=port, header_timeout_s=HEADER_S,
                        body_timeout_s=BODY_S, max_connections=8)
    options = server_options(settings)
    options["http"] = protocol_class(HEADER_S, BODY_S, request.param)
    server = uvicorn.Server(uvicorn.Config(_hello, host="127.0.0.1", port=port, lifespan="off",
                                           log_config=None, **options))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_deadlines_in_both_implementations(small_server: int) -> None:
    with _connect(small_server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n0123")
        data, waited = _read_until_closed(sock)
    assert waited < BODY_S + SLACK_S
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    with _connect(small_server) as sock:
        sock.sendall(b"GET / HT")
        data, waited = _read_until_closed(sock)
    assert waited < HEADER_S + SLACK_S
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert httpx.get(f"http://127.0.0.1:{small_server}/").text == "ok"


def test_connections_beyond_max_connections_answer_503(small_server: int) -> None:
    idle = [_connect(small_server) for _ in range(8)]
    try:
        time.sleep(0.2)
        r = httpx.get(f"http://127.0.0.1:{small_server}/")
        assert r.status_code == 503
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)
    assert httpx.get(f"http://127.0.0.1:{small_server}/").status_code == 200
