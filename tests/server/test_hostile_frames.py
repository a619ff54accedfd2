"""Hostile frames against a real `inspector serve`: every one answers a clear JSON 2xx/4xx (never
a 500 that closes the connection), admission happens before the body is read, a client hanging
up mid-upload is no error, and the request body is in the OpenAPI schema."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hostile_corpus import HostileFrame, hostile_corpus
from tests.model_factory import make_package
from tests.server.conftest import good_frame
from tests.server.harness import ServerProcess, base_env, read_answer

CTYPES = {b"\x89P": "image/png", b"\xff\xd8": "image/jpeg", b"BM": "image/bmp",
          b"II": "image/tiff", b"MM": "image/tiff"}


def ctype(data: bytes) -> str:
    return CTYPES.get(data[:2], "application/octet-stream")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("hostile")
    make_package(root / "models")
    env = base_env(root / "data", INSPECTOR_AUTH_ENABLED="false", INSPECTOR_SAMPLE_PASSES="0",
                   INSPECTOR_QUEUE_SIZE="2")
    with ServerProcess(env, root / "models", root / "server.log") as srv:
        yield srv


def post(client: httpx.Client, data: bytes, station: str = "s1", **params: str) -> httpx.Response:
    return client.post("/v1/inspect", params={"station": station, **params}, content=data,
                       headers={"Content-Type": ctype(data)}, timeout=120)


def no_unhandled_errors(log: str) -> None:
    assert "unhandled error" not in log and "Traceback" not in log, log[-4000:]


@pytest.mark.parametrize(
    "frame", [f for f in hostile_corpus() if f.name != "png-grey-7000x7000"],
    ids=lambda f: f.name)
def test_corpus_answers_clear_json_on_a_live_connection(
    server: ServerProcess, frame: HostileFrame
) -> None:
    with httpx.Client(base_url=server.url) as client:
        r = post(client, frame.data)
        assert r.status_code < 500, r.text
        if frame.status is not None:
            assert r.status_code == frame.status, (frame.name, r.text)
        if r.status_code >= 400:
            err = r.json()["error"]
            assert err["status"] == r.status_code and err["hint"], err
        # The keep-alive connection survives the refusal: the next frame goes on it.
        again = post(client, good_frame())
        assert again.status_code == 200, again.text
    no_unhandled_errors(server.log())


@pytest.mark.slow
def test_huge_grey_png_is_judged(server: ServerProcess) -> None:
    frame = next(f for f in hostile_corpus() if f.name == "png-grey-7000x7000")
    with httpx.Client(base_url=server.url) as client:
        r = post(client, frame.data)
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] in ("pass", "fail")


def test_bad_part_id_is_refused_before_the_body(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/inspect?station=s1&part_id=A17%00x HTTP/1.1\r\n"
                     b"Host: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n")
        head = read_answer(sock)  # no body sent: answered anyway
    assert head.startswith("HTTP/1.1 422"), head
    assert "InvalidTextError" in head and "U+0000" in head


def test_queue_slot_is_taken_before_the_body_is_read(server: ServerProcess) -> None:
    """Two uploads stalled mid-body hold the model's two slots (queue_size 2): the next frame
    hears 503 + Retry-After at once. Before, slots were taken only after the whole body."""
    stalled = []
    try:
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"POST /v1/inspect?station=s1 HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: image/jpeg\r\nContent-Length: 50000\r\n\r\n"
                         + b"\xff" * 10)
            stalled.append(sock)
        time.sleep(0.3)
        with httpx.Client(base_url=server.url) as client:
            t0 = time.perf_counter()
            r = post(client, good_frame())
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "1" and time.perf_counter() - t0 < 2
            assert r.json()["error"]["type"] == "ServerBusyError"
    finally:
        for sock in stalled:
            sock.close()
    time.sleep(0.3)  # the hang-ups free the slots
    with httpx.Client(base_url=server.url) as client:
        assert post(client, good_frame()).status_code == 200


def test_client_hanging_up_mid_upload_is_no_error(server: ServerProcess) -> None:
    before = len(server.log())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/inspect?station=s1 HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n" + b"\xff" * 10)
    deadline = time.monotonic() + 10
    while "hung up while sending a frame" not in server.log()[before:]:
        assert time.monotonic() < deadline, server.log()[before:]
        time.sleep(0.05)
    log = server.log()[before:]
    no_unhandled_errors(log)
    with httpx.Client(base_url=server.url) as client:
        assert post(client, good_frame()).status_code == 200
        metrics = client.get("/metrics").text
    assert 'inspector_http_errors_total{status="499"}' in metrics


def test_openapi_declares_the_frame_body(server: ServerProcess) -> None:
    op = httpx.get(f"{server.url}/openapi.json").json()["paths"]["/v1/inspect"]["post"]
    content = op["requestBody"]["content"]
    for media in ("image/jpeg", "image/png", "image/bmp", "image/tiff",
                  "application/octet-stream"):
        assert content[media]["schema"] == {"type": "string", "format": "binary"}
    assert "image" in content["multipart/form-data"]["schema"]["properties"]
    assert "422" in op["responses"] and "413" in op["responses"]


def test_server_log_is_clean(server: ServerProcess, tmp_path: Path) -> None:
    no_unhandled_errors(server.log())
