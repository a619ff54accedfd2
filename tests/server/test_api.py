"""The HTTP API against a real server process: verdicts, records, artifacts, reviews, MQTT,
bad input, roles. Runs once on SQLite and once on PostgreSQL (marked `postgres`)."""

from __future__ import annotations

import json
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.server.conftest import Live, defect_frame, good_frame

pytestmark = pytest.mark.slow


def post(live: Live, body: bytes, station: str = "s1", ctype: str = "image/jpeg",
         role: str = "camera", **params: str) -> httpx.Response:
    return httpx.post(f"{live.url}/v1/inspect", content=body, params={"station": station, **params},
                      headers={"Content-Type": ctype, **live.auth(role)}, timeout=30)


def assert_json_error(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["status"] == status and err["message"]
    return err


def png_header_claiming(width: int, height: int) -> bytes:
    """A valid PNG structure whose IHDR claims width x height, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_verdicts_and_records(live: Live) -> None:
    ok = post(live, good_frame(), part_id="A-1")
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["verdict"] == "pass" and body["model"] == {"name": "tiny", "version": "1"}
    assert body["threshold"] == 0.5 and body["part_id"] == "A-1"
    assert set(body["timings"]) >= {"decode_ms", "queue_ms", "inference_ms", "total_ms"}
    assert body["links"]["image"] is None  # passes are not sampled in this server

    bad = post(live, defect_frame(), ctype="image/png", heatmap="inline")
    assert bad.status_code == 200, bad.text
    fail = bad.json()
    assert fail["verdict"] == "fail" and fail["score"] >= 0.5
    assert fail["heatmap_inline"].startswith("data:image/jpeg;base64,")

    rec = httpx.get(f"{live.url}{fail['links']['self']}", headers=live.auth("reviewer")).json()
    assert rec["id"] == fail["id"] and rec["verdict"] == "fail" and rec["line"] == live.line
    assert rec["frame_width"] == 128 and rec["frame_height"] == 96
    image = httpx.get(f"{live.url}{fail['links']['image']}", headers=live.auth("reviewer"))
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == defect_frame()  # stored exactly as the camera sent it
    heat = httpx.get(f"{live.url}{fail['links']['heatmap']}", headers=live.auth("reviewer"))
    assert heat.status_code == 200 and heat.content[:2] == b"\xff\xd8"
    missing = httpx.get(f"{live.url}/v1/inspections/{body['id']}/image",
                        headers=live.auth("reviewer"))
    assert_json_error(missing, 404)


def test_multipart_upload(live: Live) -> None:
    r = httpx.post(f"{live.url}/v1/inspect", params={"station": "s1"},
                   files={"image": ("part.jpg", good_frame(), "image/jpeg")},
                   headers=live.auth("camera"), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "pass"


def test_concurrent_posts_are_all_recorded(live: Live) -> None:
    frames = [good_frame(seed=i) if i % 3 else defect_frame(seed=i) for i in range(48)]

    def one(i: int) -> str:
        ctype = "image/jpeg" if i % 3 else "image/png"
        r = post(live, frames[i], station="conc", ctype=ctype, part_id=f"p{i}")
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(one, range(48)))
    assert len(ids) == 48
    page = httpx.get(f"{live.url}/v1/inspections", params={"station": "conc", "limit": 500},
                     headers=live.auth("reviewer")).json()
    assert {item["id"] for item in page["items"]} == ids
    fails = httpx.get(f"{live.url}/v1/inspections",
                      params={"station": "conc", "verdict": "fail", "limit": 500},
                      headers=live.auth("reviewer")).json()["items"]
    assert len(fails) == 16 and all(f["links"]["image"] for f in fails)


def test_pagination_and_review(live: Live) -> None:
    ids = [post(live, defect_frame(seed=i), station="pg", ctype="image/png").json()["id"]
           for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"station": "pg", "limit": 2}
        if cursor:
            params["before"] = cursor
        page = httpx.get(f"{live.url}/v1/inspections", params=params,
                         headers=live.auth("reviewer")).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))  # newest first, nothing skipped or repeated

    r = httpx.post(f"{live.url}/v1/inspections/{ids[0]}/review", headers=live.auth("reviewer"),
                   json={"label": "defect", "defect_type": "scratch", "note": "edge"})
    assert r.status_code == 201, r.text
    assert r.json()["reviewer"] == "test-reviewer" and r.json()["defect_type"] == "scratch"
    bad = httpx.post(f"{live.url}/v1/inspections/{ids[1]}/review", headers=live.auth("reviewer"),
                     json={"label": "defect", "defect_type": "../etc"})
    assert_json_error(bad, 422)
    reviewed = httpx.get(f"{live.url}/v1/inspections",
                         params={"station": "pg", "review": "defect"},
                         headers=live.auth("reviewer")).json()["items"]
    assert [i["id"] for i in reviewed] == [ids[0]]
    unreviewed = httpx.get(f"{live.url}/v1/inspections",
                           params={"station": "pg", "review": "unreviewed"},
                           headers=live.auth("reviewer")).json()["items"]
    assert len(unreviewed) == 4


def test_bad_inputs_get_4xx_json_and_server_keeps_serving(live: Live) -> None:
    jpeg = good_frame()
    err = assert_json_error(post(live, b""), 400)
    assert "empty" in str(err["message"])
    assert_json_error(post(live, jpeg[: len(jpeg) // 2]), 400)  # truncated
    err = assert_json_error(post(live, png_header_claiming(20000, 20000), ctype="image/png"), 413)
    assert "pixels" in str(err["message"]) and err["hint"]
    err = assert_json_error(post(live, jpeg, ctype="application/json"), 415)
    assert "Content-Type" in str(err["hint"])
    err = assert_json_error(post(live, jpeg, ctype="application/x-www-form-urlencoded"), 415)
    assert_json_error(post(live, jpeg, station="no/such"), 422)
    assert_json_error(post(live, b"garbage" * 10), 400)
    big = b"\xff\xd8" + b"\0" * 400_000
    assert_json_error(post(live, big), 413)  # Content-Length over the limit

    def chunks():  # no Content-Length: the limit applies while streaming
        for _ in range(40):
            yield b"\0" * 10_000

    r = httpx.post(f"{live.url}/v1/inspect", params={"station": "s1"}, content=chunks(),
                   headers={"Content-Type": "image/jpeg", **live.auth("camera")}, timeout=30)
    assert_json_error(r, 413)
    assert post(live, jpeg).status_code == 200  # still serving


def test_unknown_station_and_sampled_passes(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With a station mapping, stations outside it are refused with the known ones named;
    with sample_passes=1 every pass keeps its image too."""
    from tests.model_factory import make_package
    from tests.server.harness import ServerProcess, base_env

    root = tmp_path_factory.mktemp("stations")
    make_package(root / "models")
    env = base_env(root / "data", INSPECTOR_AUTH_ENABLED="false",
                   INSPECTOR_STATIONS=json.dumps({"weld-1": "tiny:1"}),
                   INSPECTOR_SAMPLE_PASSES="1")
    with ServerProcess(env, root / "models", root / "server.log") as server:
        r = httpx.post(f"{server.url}/v1/inspect", params={"station": "weld-9"},
                       content=good_frame(), headers={"Content-Type": "image/jpeg"})
        err = r.json()["error"]
        assert r.status_code == 404 and "weld-9" in err["message"] and "weld-1" in err["hint"]
        ok = httpx.post(f"{server.url}/v1/inspect", params={"station": "weld-1"},
                        content=good_frame(), headers={"Content-Type": "image/jpeg"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["verdict"] == "pass" and ok.json()["links"]["image"]
        image = httpx.get(f"{server.url}{ok.json()['links']['image']}")
        assert image.content == good_frame()


def test_role_matrix(live: Live) -> None:
    url = live.url
    frame = good_frame()
    assert_json_error(httpx.post(f"{url}/v1/inspect", params={"station": "s1"}, content=frame,
                                 headers={"Content-Type": "image/jpeg"}), 401)
    assert_json_error(httpx.get(f"{url}/v1/inspections",
                                headers={"Authorization": "Bearer insp_nope_nope"}), 401)
    some_id = post(live, frame).json()["id"]
    # camera: inspect only
    assert_json_error(httpx.get(f"{url}/v1/inspections", headers=live.auth("camera")), 403)
    assert_json_error(httpx.get(f"{url}/v1/inspections/{some_id}", headers=live.auth("camera")),
                      403)
    assert_json_error(httpx.post(f"{url}/v1/inspections/{some_id}/review",
                                 headers=live.auth("camera"), json={"label": "good"}), 403)
    # reviewer: read + review, no inspect, no deploy
    assert post(live, frame, role="reviewer").status_code == 403
    assert httpx.get(f"{url}/v1/inspections", headers=live.auth("reviewer")).status_code == 200
    assert httpx.get(f"{url}/v1/models", headers=live.auth("reviewer")).status_code == 200
    deploy = {"model": "tiny:1", "mode": "active"}
    assert_json_error(httpx.put(f"{url}/v1/stations/s7/model", json=deploy,
                                headers=live.auth("reviewer")), 403)
    # admin: everything
    r = httpx.put(f"{url}/v1/stations/s7/model", json=deploy, headers=live.auth("admin"))
    assert r.status_code == 200 and r.json()["model"] == "tiny:1"
    assert post(live, frame, role="admin", station="s7").status_code == 200
    models = httpx.get(f"{url}/v1/models", headers=live.auth("admin")).json()
    assert models["stations"]["s7"] == "tiny:1"


def test_every_v1_route_needs_a_key(live: Live) -> None:
    spec = httpx.get(f"{live.url}/openapi.json").json()
    checked = 0
    for path, methods in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        concrete = path.replace("{inspection_id}", "0" * 32).replace("{station}", "s1")
        for method in methods:
            r = httpx.request(method.upper(), f"{live.url}{concrete}")
            assert r.status_code == 401, f"{method} {path} answered {r.status_code}"
            assert r.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked >= 7


def test_time_filters_accept_naive_and_zoned_times(live: Live) -> None:
    rec = post(live, good_frame(), station="tf").json()
    for since in (rec["created_at"][:19], rec["created_at"]):  # naive = UTC
        page = httpx.get(f"{live.url}/v1/inspections", params={"station": "tf", "since": since},
                         headers=live.auth("reviewer"))
        assert page.status_code == 200, page.text
        assert [i["id"] for i in page.json()["items"]] == [rec["id"]]
    later = httpx.get(f"{live.url}/v1/inspections",
                      params={"station": "tf", "since": "2999-01-01T00:00:00Z"},
                      headers=live.auth("reviewer"))
    assert later.json()["items"] == []
    bad = httpx.get(f"{live.url}/v1/inspections", params={"since": "yesterday"},
                    headers=live.auth("reviewer"))
    assert_json_error(bad, 422)


def test_health_ready_metrics(live: Live) -> None:
    assert httpx.get(f"{live.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{live.url}/readyz")
    assert ready.status_code == 200 and ready.json()["models"] == ["tiny:1"]
    assert ready.json()["database"] == "ok"
    post(live, good_frame())
    text = httpx.get(f"{live.url}/metrics").text
    assert 'inspector_inspections_total{station="s1",verdict="pass"}' in text
    assert "inspector_stage_milliseconds_bucket" in text and "inspector_batch_size" in text
    assert 'inspector_queue_depth{model="tiny:1"}' in text


@pytest.mark.mqtt
def test_mqtt_receives_every_verdict(live: Live) -> None:
    if not live.mqtt:
        pytest.skip("no MQTT broker at 127.0.0.1:1883 (start it: mosquitto -d)")
    received: dict[str, dict[str, object]] = {}
    subscribed = threading.Event()
    all_in = threading.Event()
    expected: set[str] = set()

    def on_connect(c: mqtt.Client, *_: object) -> None:
        c.subscribe(f"inspector/{live.line}/+/verdict", qos=1)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        event = json.loads(msg.payload)
        assert msg.topic == f"inspector/{live.line}/{event['station']}/verdict"
        received[event["id"]] = event
        if expected and expected <= set(received):
            all_in.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{live.line}")
    sub.on_connect = on_connect
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = on_message
    sub.connect("127.0.0.1", 1883)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda i: post(live, good_frame(seed=i), station="mq").json()["id"],
                                range(24)))
        expected.update(ids)
        if expected <= set(received):
            all_in.set()
        assert all_in.wait(60), f"missing {len(expected - set(received))} verdicts"
        event = received[ids[0]]
        assert event["verdict"] == "pass" and event["model"] == {"name": "tiny", "version": "1"}
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_bench_client_against_the_server(live: Live) -> None:
    """`inspector bench --server`: its keep-alive client gets answers and counts refusals."""
    from inspector.bench import bench_server

    blobs = [good_frame(seed=i) for i in range(4)] + [defect_frame(seed=9)]
    ok = bench_server(live.url, blobs, clients=3, seconds=1.5, station="bench",
                      key=live.keys["camera"], warmup_s=0.2)
    assert ok.images > 0 and ok.errors == 0, ok
    assert ok.p50_ms is not None and 0 < ok.p50_ms <= ok.p99_ms  # type: ignore[operator]
    recorded, cursor = 0, None
    while True:  # every page of the station's records
        params: dict[str, str | int] = {"station": "bench", "limit": 500}
        if cursor:
            params["before"] = cursor
        page = httpx.get(f"{live.url}/v1/inspections", params=params,
                         headers=live.auth("reviewer")).json()
        recorded += len(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert recorded >= ok.images, ok  # every answered frame was recorded (warm-up ones too)
    refused = bench_server(live.url, blobs, clients=2, seconds=0.5, station="bench",
                           key="not-a-key", warmup_s=0.0)
    assert refused.images == 0 and set(refused.error_statuses) == {"401"}, refused
