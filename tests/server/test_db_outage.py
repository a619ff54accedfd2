"""A database outage under load: 503 + Retry-After while PostgreSQL is down, recovery without a
server restart, and not one acknowledged verdict lost: every one is in the database and
arrives on MQTT (from the outbox, which lives in the same database).

A private PostgreSQL cluster (tests/pg_cluster.py) is crashed with `pg_ctl stop -m immediate`
while 8 cameras keep posting, kept down 12 s by default and 20 s in the drill (longer than
the 10 s API-key cache, so key lookups hit the dead database too), then started again.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.model_factory import make_package
from tests.pg_cluster import PrivatePostgres
from tests.server.conftest import good_frame
from tests.server.harness import Mosquitto, ServerProcess, base_env, create_key
from tests.server.test_outage import Subscriber
from tests.ui.conftest import form_token

pytestmark = [pytest.mark.postgres, pytest.mark.mqtt, pytest.mark.slow]

RETRY_AFTER = "3"
#: Down longer than the 10 s API-key cache. The issue's drill (20 s):
#: `INSPECTOR_DRILL_DB_DOWN_S=20 python -m pytest tests/server/test_db_outage.py -s`.
DOWN_S = max(12.0, float(os.environ.get("INSPECTOR_DRILL_DB_DOWN_S", "12")))


class Cameras:
    """Threads posting frames; every answer is kept with the time it came back."""

    def __init__(self, url: str, key: str, n: int = 8) -> None:
        self.url = url
        self.key = key
        self.answers: list[tuple[float, int, str | None, str | None, str]] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._frame = good_frame(3)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(n)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def _run(self, n: int) -> None:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "image/jpeg"}
        i = 0
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                i += 1
                try:
                    r = client.post(f"{self.url}/v1/inspect", content=self._frame,
                                    params={"station": "press-1", "part_id": f"c{n}-{i}"},
                                    headers=headers)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(repr(exc))
                    continue
                body = r.json()
                vid = body.get("id") if r.status_code == 200 else None
                text = "" if r.status_code == 200 else r.text
                with self._lock:
                    self.answers.append((time.monotonic(), r.status_code,
                                         r.headers.get("retry-after"), vid, text))
                if r.status_code != 200:
                    time.sleep(0.2)  # a polite camera backs off (less than Retry-After)

    def since(self, t: float) -> list[tuple[float, int, str | None, str | None, str]]:
        with self._lock:
            return [a for a in self.answers if a[0] >= t]


def _sign_in(url: str, key: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    page = client.get("/ui/login")
    r = client.post("/ui/login", data={"key": key, "csrf": form_token(page.text),
                                       "next": "/ui/"})
    assert r.status_code == 303, r.text
    return client


def test_database_outage_answers_503_and_loses_no_verdict(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    sub = Subscriber(broker.port, "dbdown")
    with PrivatePostgres() as pg:
        make_package(tmp_path / "models")
        env = base_env(tmp_path / "data", INSPECTOR_DATABASE_URL=pg.url,
                       INSPECTOR_SAMPLE_PASSES="0", INSPECTOR_MAX_DELAY_MS="2",
                       INSPECTOR_DB_RETRY_AFTER_S=RETRY_AFTER, INSPECTOR_NODE_ID="outage",
                       INSPECTOR_LINE="dbdown", INSPECTOR_PUBLISH_MAX_BACKOFF_S="1",
                       INSPECTOR_MQTT_URL=f"mqtt://127.0.0.1:{broker.port}")
        camera, reviewer = create_key(env, "camera"), create_key(env, "reviewer")
        never_used = create_key(env, "camera")  # not in the key cache when the database dies
        server = ServerProcess(env, tmp_path / "models", tmp_path / "server.log").start()
        cams = Cameras(server.url, camera)
        ui = _sign_in(server.url, reviewer)
        read = {"Authorization": f"Bearer {reviewer}"}
        try:
            assert ui.get("/ui/").status_code == 200
            cams.start()
            time.sleep(3.0)
            assert any(a[1] == 200 for a in cams.since(0)), cams.answers[-3:]

            pg.stop("immediate")
            down_at = time.monotonic()
            time.sleep(11.0)  # past the key cache's 10 s: lookups now need the database
            t0 = time.perf_counter()
            ready = httpx.get(f"{server.url}/readyz", timeout=30)
            ready_s = time.perf_counter() - t0
            listing = httpx.get(f"{server.url}/v1/inspections", headers=read, timeout=30)
            unknown = httpx.post(f"{server.url}/v1/inspect", params={"station": "press-1"},
                                 content=good_frame(1), timeout=30,
                                 headers={"Authorization": f"Bearer {never_used}",
                                          "Content-Type": "image/jpeg"})
            page = ui.get("/ui/")
            time.sleep(max(0.0, DOWN_S - (time.monotonic() - down_at)))
            restart_at = time.monotonic()
            pg.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(
                    a[1] == 200 for a in cams.since(restart_at)):
                time.sleep(0.2)
            time.sleep(1.0)
            cams.stop()
            after = httpx.get(f"{server.url}/readyz", timeout=30)
            ui_after = ui.get("/ui/")
            acked_ids = {a[3] for a in cams.answers if a[1] == 200}
            missing_mqtt = sub.wait_for(acked_ids, 90)  # the server is still running
        finally:
            cams.stop()
            ui.close()
            server.stop()
            sub.close()
            broker.stop()
        log = server.log()

        # While down: every kind of request answers 503 + Retry-After, quickly.
        assert ready.status_code == 503 and ready.json()["database"] == "unreachable"
        assert ready_s < 6.0, f"/readyz took {ready_s:.1f} s while the database was down"
        for r in (listing, unknown, page):
            assert r.status_code == 503, (r.request.url, r.status_code, r.text)
            assert r.headers.get("retry-after") == RETRY_AFTER
            assert "readyz" in r.json()["error"]["hint"]
        down = [a for a in cams.answers if down_at + 0.5 <= a[0] <= restart_at]
        assert len(down) >= 20, f"only {len(down)} answers while the database was down"
        assert {a[1] for a in down} == {503}, sorted({(a[1], a[4][:200]) for a in down})
        assert all(a[2] == RETRY_AFTER for a in down)
        assert not [a for a in cams.answers if a[1] >= 500 and a[1] != 503]
        assert not cams.failures, cams.failures[:3]
        assert "Traceback" not in log, log[-4000:]
        assert "database unavailable" in log

        # After the restart: the same server process answers again.
        assert after.status_code == 200, after.text
        assert ui_after.status_code == 200
        recovered = [a for a in cams.since(restart_at) if a[1] == 200]
        assert recovered, "no verdict was recorded after PostgreSQL came back"

        # Zero acknowledged verdicts lost.
        acked = {a[3] for a in cams.answers if a[1] == 200}
        engine = sa.create_engine(pg.url)
        try:
            with engine.connect() as conn:
                stored = set(conn.scalars(sa.text("SELECT id FROM inspections")))
        finally:
            engine.dispose()
        assert acked and not acked - stored, f"{len(acked - stored)} of {len(acked)} lost"
        assert not missing_mqtt, f"{len(missing_mqtt)} of {len(acked)} never arrived on MQTT"
        print(f"answers: {len(cams.answers)}, acknowledged {len(acked)}, 503 while down "
              f"{len(down)}, /readyz while down {ready_s * 1000:.0f} ms")
