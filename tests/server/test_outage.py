"""A broker outage delays verdicts and never drops them.

A private mosquitto (with persistence, so the subscriber's session survives its restart) is
stopped while frames keep arriving and started again; afterwards every verdict has arrived.
The shared broker on 1883 is never touched.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.model_factory import make_package
from tests.server.conftest import good_frame
from tests.server.harness import Mosquitto, ServerProcess, base_env

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]


class Subscriber:
    """A persistent-session QoS 1 subscriber that keeps every verdict id it sees."""

    def __init__(self, port: int, line: str) -> None:
        self.ids: set[str] = set()
        self.duplicates = 0
        self._lock = threading.Lock()
        self.topic = f"inspector/{line}/+/verdict"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{line}",
                                  clean_session=False)
        self.client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        event_id = json.loads(msg.payload)["id"]
        with self._lock:
            if event_id in self.ids:
                self.duplicates += 1
            self.ids.add(event_id)

    def wait_for(self, expected: set[str], timeout: float) -> set[str]:
        """Wait until every expected id arrived; returns the missing ones."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                missing = expected - self.ids
            if not missing:
                return set()
            time.sleep(0.2)
        return missing

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_broker_outage_delays_but_never_drops(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    line = "outage"
    make_package(tmp_path / "models")
    env = base_env(tmp_path / "data", INSPECTOR_AUTH_ENABLED="false", INSPECTOR_LINE=line,
                   INSPECTOR_MQTT_URL=f"mqtt://127.0.0.1:{broker.port}",
                   INSPECTOR_PUBLISH_MAX_BACKOFF_S="2")
    sub = Subscriber(broker.port, line)
    sent: list[str] = []
    stop_posting = threading.Event()
    errors: list[str] = []

    def camera(url: str) -> None:
        with httpx.Client(timeout=30) as client:
            i = 0
            while not stop_posting.is_set():
                r = client.post(f"{url}/v1/inspect", params={"station": "st1"},
                                content=good_frame(seed=i), headers={"Content-Type": "image/jpeg"})
                if r.status_code == 200:
                    sent.append(r.json()["id"])
                else:
                    errors.append(r.text)
                i += 1
                time.sleep(0.02)

    try:
        with ServerProcess(env, tmp_path / "models", tmp_path / "server.log") as server:
            assert sub.wait_for(set(), 5) == set()
            poster = threading.Thread(target=camera, args=(server.url,))
            poster.start()
            _wait_until(lambda: len(sent) >= 10)
            before_outage = set(sent)
            assert sub.wait_for(before_outage, 30) == set()

            broker.stop()  # mid-run: the camera keeps posting
            count_at_stop = len(sent)
            _wait_until(lambda: len(sent) >= count_at_stop + 15)
            broker.start()
            _wait_until(lambda: len(sent) >= count_at_stop + 25)
            stop_posting.set()
            poster.join(30)

            assert not errors, errors[:3]
            missing = sub.wait_for(set(sent), 60)
            assert not missing, f"{len(missing)} of {len(sent)} verdicts never arrived"
            backlog = _wait_for_metric(server.url, 'destination="mqtt",state="pending"', 0.0)
            assert backlog == 0.0
            log = server.log()
            assert "MQTT disconnected" in log and "retrying" in log  # the outage was real
    finally:
        stop_posting.set()
        sub.close()
        broker.stop()


def _wait_until(cond: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time (is the server stuck?)")
        time.sleep(0.05)


def _wait_for_metric(url: str, labels: str, want: float, timeout: float = 30.0) -> float | None:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        for line in httpx.get(f"{url}/metrics").text.splitlines():
            if line.startswith("inspector_outbox_backlog{") and labels in line:
                value = float(line.rsplit(" ", 1)[1])
        if value == want:
            return value
        time.sleep(0.5)
    return value
