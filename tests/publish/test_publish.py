"""Outbox delivery to a real webhook receiver (signed, retried) and a real MQTT broker."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from inspector.publish.delivery import OutboxWorker, backoff_s
from inspector.publish.messages import verdict_message
from inspector.publish.mqtt import MqttDestination
from inspector.publish.webhook import WebhookDestination, sign, verify_signature
from inspector.store import outbox
from inspector.store.db import Database
from inspector.store.inspections import NewInspection, new_id, record_batch
from tests.server.harness import reachable

SECRET = "s3cret-for-tests-0123456789"


def record(station: str = "s1", line: str = "l1") -> NewInspection:
    return NewInspection(
        id=new_id(), created_at=datetime.now(UTC), node="n1", line=line, station=station,
        part_id=None, model_name="tiny", model_version="1", score=0.7, threshold=0.5,
        verdict="fail", label=None, frame_width=64, frame_height=48, queue_ms=0.0,
        decode_ms=0.0, inference_ms=0.0, total_ms=0.0,
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    database.migrate()
    yield database
    database.dispose()


class Receiver:
    """A real HTTP endpoint that checks signatures; answers 500 for the first `fail_first`."""

    def __init__(self, fail_first: int = 0) -> None:
        self.events: list[dict[str, object]] = []
        self.bad_signatures = 0
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify_signature(SECRET, self.headers["X-Inspector-Timestamp"], body,
                                      self.headers["X-Inspector-Signature"])
                if not ok:
                    outer.bad_signatures += 1
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(500)
                else:
                    outer.events.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_signature_roundtrip() -> None:
    ts = str(int(time.time()))
    sig = sign(SECRET, ts, b"{}")
    assert verify_signature(SECRET, ts, b"{}", sig)
    assert not verify_signature(SECRET, ts, b"{ }", sig)
    assert not verify_signature("other-secret-000000", ts, b"{}", sig)
    assert not verify_signature(SECRET, str(int(time.time()) - 3600), b"{}",
                                sign(SECRET, str(int(time.time()) - 3600), b"{}"))


def test_backoff_grows_and_is_capped() -> None:
    """Full jitter between base/2 and base * 2**attempts: the spread of delays grows with each
    attempt (a broker outage is not hammered), never drops below base/2 and stops at the cap."""
    random.seed(7)
    draws = {n: [backoff_s(n) for _ in range(400)] for n in (1, 3, 5, 8)}
    for n, d in draws.items():
        assert min(d) >= 0.25, n
        assert max(d) <= 0.5 * 2**n, n
    # The largest of 400 uniform draws sits near the ceiling: 1, 4, 16 s, then the default
    # cap of 60 s (2**8 / 2 = 128 s would be over it).
    assert max(draws[1]) > 0.9 and max(draws[3]) > 3.6 and max(draws[5]) > 14.0
    assert 55.0 < max(draws[8]) <= 60.0
    means = [sum(d) / len(d) for d in draws.values()]
    assert means == sorted(means) and means[-1] > 10 * means[0]
    capped = [backoff_s(30, cap=5.0) for _ in range(400)]
    assert max(capped) <= 5.0 and max(capped) > 4.5  # the cap is reached, not exceeded
    assert backoff_s(10**6, cap=60.0) <= 60.0  # huge attempt counts do not overflow


def test_webhook_delivers_signed_and_retries(db: Database) -> None:
    receiver = Receiver(fail_first=2)
    dest = WebhookDestination("erp", receiver.url, SECRET)
    worker = OutboxWorker(db, "n1", dest, max_backoff_s=0.01)
    items = [record() for _ in range(3)]
    record_batch(db, items, ["webhook:erp"], verdict_message)
    dest.start()
    try:
        for _ in range(20):  # each round retries what is due; backoff here is ~10 ms
            worker.drain_once()
            if len(receiver.events) == 3:
                break
            time.sleep(0.05)
    finally:
        dest.stop()
        receiver.close()
    assert sorted(str(e["id"]) for e in receiver.events) == sorted(i.id for i in items)
    assert receiver.bad_signatures == 0
    assert outbox.backlog(db, "n1") == {}


def test_webhook_gives_up_after_max_attempts(db: Database) -> None:
    dest = WebhookDestination("gone", "http://127.0.0.1:9/nothing-listens", SECRET, timeout_s=1)
    worker = OutboxWorker(db, "n1", dest, max_backoff_s=0.01, max_attempts=2)
    record_batch(db, [record()], ["webhook:gone"], verdict_message)
    for _ in range(10):
        worker.drain_once()
        time.sleep(0.03)
    assert outbox.backlog(db, "n1") == {("webhook:gone", "dead"): 1}


@pytest.mark.mqtt
def test_mqtt_worker_publishes_qos1_and_empties_the_outbox(db: Database) -> None:
    if not reachable("127.0.0.1", 1883):
        pytest.skip("no MQTT broker at 127.0.0.1:1883")
    line = f"pub{new_id()[-8:]}"
    got: list[str] = []
    ready = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, *_: c.subscribe(f"inspector/{line}/#", qos=1)
    sub.on_subscribe = lambda *_: ready.set()
    sub.on_message = lambda _c, _u, m: got.append(json.loads(m.payload)["id"])
    sub.connect("127.0.0.1", 1883)
    sub.loop_start()
    dest = MqttDestination("mqtt://127.0.0.1:1883", client_id="test")
    # Deletes of delivered rows are batched; a short interval keeps the test quick.
    worker = OutboxWorker(db, "n1", dest, settle_interval_s=0.2)
    try:
        assert ready.wait(10)
        items = [replace(record(line=line), station=f"st{i % 2}") for i in range(10)]
        record_batch(db, items, ["mqtt"], verdict_message)
        worker.start()
        deadline = time.monotonic() + 30
        while len(set(got)) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(got) == {i.id for i in items}
        while outbox.backlog(db, "n1") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outbox.backlog(db, "n1") == {}
    finally:
        worker.stop()
        sub.loop_stop()
        sub.disconnect()


@pytest.mark.slow
def test_server_posts_signed_webhooks(tmp_path: Path) -> None:
    """End to end: a server configured with a webhook delivers every verdict, signed."""
    from tests.model_factory import make_package
    from tests.server.conftest import good_frame
    from tests.server.harness import ServerProcess, base_env

    receiver = Receiver(fail_first=1)
    make_package(tmp_path / "models")
    hooks = json.dumps([{"name": "erp", "url": receiver.url, "secret": SECRET}])
    env = base_env(tmp_path / "data", INSPECTOR_AUTH_ENABLED="false", INSPECTOR_WEBHOOKS=hooks,
                   INSPECTOR_PUBLISH_MAX_BACKOFF_S="1")
    try:
        with ServerProcess(env, tmp_path / "models", tmp_path / "server.log") as server:
            import httpx

            ids = {httpx.post(f"{server.url}/v1/inspect", params={"station": "w1"},
                              content=good_frame(seed=i),
                              headers={"Content-Type": "image/jpeg"}).json()["id"]
                   for i in range(5)}
            deadline = time.monotonic() + 30
            while {e["id"] for e in receiver.events} != ids and time.monotonic() < deadline:
                time.sleep(0.1)
        assert {e["id"] for e in receiver.events} == ids
        assert receiver.bad_signatures == 0
    finally:
        receiver.close()


def test_offered_rows_go_out_once_without_reading_the_table(db: Database) -> None:
    """Rows handed over in memory are sent once: the start-up scan's rows are not resent
    when they are also offered, and later rows go out from memory with batched deletes."""
    receiver = Receiver()
    dest = WebhookDestination("erp", receiver.url, SECRET)
    worker = OutboxWorker(db, "n1", dest, settle_interval_s=60.0)
    first = record_batch(db, [record() for _ in range(3)], ["webhook:erp"], verdict_message)
    dest.start()
    try:
        assert worker.drain_once(settle=False) == (3, 0)  # start-up: read from the table
        worker.offer(first["webhook:erp"])  # the same rows, offered after their commit
        later = record_batch(db, [record() for _ in range(4)], ["webhook:erp"], verdict_message)
        worker.offer(later["webhook:erp"])
        assert worker.drain_once(settle=False) == (4, 0)  # only the new ones, from memory
        assert worker.drain_once(settle=False) == (0, 0)
        # Delivered but not yet settled: the deletes wait for the batch.
        assert outbox.backlog(db, "n1") == {("webhook:erp", "pending"): 7}
        worker.drain_once(settle=True)
        assert outbox.backlog(db, "n1") == {}
    finally:
        dest.stop()
        receiver.close()
    ids = [str(e["id"]) for e in receiver.events]
    assert len(ids) == 7 and len(set(ids)) == 7


def test_failed_memory_delivery_is_retried_from_the_table(db: Database) -> None:
    receiver = Receiver(fail_first=1)
    dest = WebhookDestination("erp", receiver.url, SECRET)
    worker = OutboxWorker(db, "n1", dest, max_backoff_s=0.01)
    assert worker.drain_once() == (0, 0)  # start-up scan of an empty table
    items = [record() for _ in range(2)]
    worker.offer(record_batch(db, items, ["webhook:erp"], verdict_message)["webhook:erp"])
    dest.start()
    try:
        delivered, failed = worker.drain_once()
        assert failed == 1 and delivered == 1  # one 500, one accepted
        for _ in range(20):
            time.sleep(0.03)
            worker.drain_once()
            if len(receiver.events) == 2:
                break
    finally:
        dest.stop()
        receiver.close()
    assert sorted(str(e["id"]) for e in receiver.events) == sorted(i.id for i in items)
    assert outbox.backlog(db, "n1") == {}
