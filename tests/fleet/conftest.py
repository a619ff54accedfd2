"""Three `inspector serve` processes sharing one fresh PostgreSQL database and the local
Mosquitto: node n1 serves station s0, nodes n2 and n3 serve station s1."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.lifecycle.conftest import frame
from tests.lifecycle.test_signed_packages import Signer
from tests.model_factory import make_package
from tests.server.harness import ServerProcess, base_env, create_key, postgres_base_url, reachable

MQTT_PORT = 1883
#: Short intervals so the fleet converges, and notices a dead node, within seconds.
FAST = {"INSPECTOR_RECONCILE_S": "0.5", "INSPECTOR_HEARTBEAT_S": "0.5",
        "INSPECTOR_STALE_AFTER": "3", "INSPECTOR_MAX_DELAY_MS": "2",
        "INSPECTOR_SAMPLE_PASSES": "0", "INSPECTOR_WORK_THREADS": "1",
        "INSPECTOR_INFERENCE_WORKERS": "1", "INSPECTOR_INTRA_OP_THREADS": "1"}


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards); skips without PostgreSQL."""
    import sqlalchemy as sa

    base = sa.make_url(postgres_base_url())
    if not reachable(base.host or "127.0.0.1", base.port or 5432):
        pytest.skip(f"PostgreSQL is not reachable at {base.host}:{base.port or 5432} "
                    "(set INSPECTOR_TEST_POSTGRES_URL to point at one)")
    name = f"insp_fleet_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class StatusWatcher:
    """Every retained or live node status message under one site, by topic."""

    def __init__(self, site: str) -> None:
        if not reachable("127.0.0.1", MQTT_PORT):
            pytest.skip(f"no MQTT broker on 127.0.0.1:{MQTT_PORT}")
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{site}")
        self.client.on_connect = lambda c, *_: c.subscribe(f"inspector/{site}/+/node/+/status",
                                                           qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", MQTT_PORT, keepalive=10)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:  # a retained status being cleared
            return
        with self._lock:
            self.messages.setdefault(msg.topic, []).append(json.loads(msg.payload))

    def last(self, topic: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.messages.get(topic)
            return found[-1] if found else None

    def clear_retained(self) -> None:
        """Remove the run's retained statuses from the shared broker."""
        with self._lock:
            topics = list(self.messages)
        for topic in topics:
            self.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Fleet:
    nodes: dict[str, ServerProcess]
    keys: dict[str, str]
    site: str
    line: str
    watcher: StatusWatcher
    tmp: Path
    #: `qa` is trusted by every node; `vendor` only by n1 (a node set up differently).
    signers: dict[str, Signer]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def call(self, node: str, method: str, path: str, role: str = "admin",
             **kw: Any) -> httpx.Response:
        headers = {**self.auth(role), **kw.pop("headers", {})}
        return httpx.request(method, f"{self.nodes[node].url}{path}", headers=headers,
                             timeout=60, **kw)

    def node_view(self, via: str = "n1") -> dict[str, dict[str, Any]]:
        r = self.call(via, "GET", "/v1/nodes", role="reviewer")
        assert r.status_code == 200, r.text
        return {n["node_id"]: n for n in r.json()["nodes"]}

    def running(self, node: str, station: str, via: str = "n1") -> str | None:
        found = self.node_view(via).get(node)
        rows = [s for s in (found or {}).get("stations", [])
                if s["station"] == station and s["mode"] == "active"]
        return rows[0]["running"] if rows else None

    def topic(self, node: str) -> str:
        return f"inspector/{self.site}/{self.line}/node/{node}/status"


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@dataclass
class LoadLoop:
    """Posts frames to some nodes' station in a loop; keeps every answer."""

    fleet: Fleet
    targets: list[str]
    station: str
    answers: list[tuple[str, int, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self, node: str) -> None:
        body = frame(140)
        url = f"{self.fleet.nodes[node].url}/v1/inspect"
        headers = {"Content-Type": "image/png", **self.fleet.auth("camera")}
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                r = client.post(url, params={"station": self.station}, content=body,
                                headers=headers)
                version = r.json()["model"]["version"] if r.status_code == 200 else r.text
                self.answers.append((node, r.status_code, version))
                time.sleep(0.02)

    def __enter__(self) -> LoadLoop:
        for node in self.targets:
            t = threading.Thread(target=self._run, args=(node,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def versions_since(self, start: int, node: str) -> set[str]:
        return {v for n, status, v in self.answers[start:] if n == node and status == 200}


@pytest.fixture(scope="module")
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    signers = {name: Signer(tmp / "keys", name) for name in ("qa", "vendor")}
    # the same signed package on every node, as if copied
    tiny1 = signers["qa"].sign(make_package(tmp / "build"))
    site, line = f"site{uuid.uuid4().hex[:8]}", "fleetline"
    watcher = StatusWatcher(site)
    with fresh_database() as db_url:
        nodes: dict[str, ServerProcess] = {}
        keys: dict[str, str] = {}
        try:
            for node, station in (("n1", "s0"), ("n2", "s1"), ("n3", "s1")):
                models = tmp / node / "models"
                shutil.copytree(tiny1, models / "tiny" / "1")
                env = base_env(tmp / node / "data", INSPECTOR_DATABASE_URL=db_url,
                               INSPECTOR_NODE_ID=node, INSPECTOR_SITE=site,
                               INSPECTOR_LINE=line, INSPECTOR_MQTT_URL=f"mqtt://127.0.0.1:"
                               f"{MQTT_PORT}", INSPECTOR_SERVE_STATIONS=json.dumps([station]),
                               INSPECTOR_STATIONS=json.dumps({station: "tiny:1"}),
                               INSPECTOR_REQUIRE_SIGNED="true", INSPECTOR_TRUSTED_KEYS=json.dumps(
                                   [str(signers[k].pub) for k in signers
                                    if k == "qa" or node == "n1"]), **FAST)
                if not keys:
                    keys = {role: create_key(env, role) for role in ("camera", "reviewer",
                                                                     "admin")}
                nodes[node] = ServerProcess(env, models, tmp / node / "server.log")
            for server in nodes.values():
                server.start()
            yield Fleet(nodes, keys, site, line, watcher, tmp, signers)
        finally:
            for server in nodes.values():
                server.stop()
            if request.session.testsfailed:
                for node, server in nodes.items():
                    print(f"--- {node} log ---\n{server.log()[-4000:]}")
            watcher.clear_retained()
            watcher.close()


@pytest.fixture(scope="module")
def killed_n3(fleet: Fleet) -> Fleet:
    """The fleet after node n3 was killed with SIGKILL (no goodbye, no clean disconnect)."""
    proc = fleet.nodes["n3"].proc
    assert proc is not None
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    return fleet
