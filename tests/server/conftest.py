"""A real `inspector serve` process per test module and backend (SQLite, PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import pytest

from tests.conftest import encode_bgr
from tests.model_factory import make_package, part_image
from tests.server.harness import (
    ServerProcess,
    base_env,
    create_key,
    postgres_schema,
    reachable,
)

SHARED_BROKER = ("127.0.0.1", 1883)


@dataclass
class Live:
    """A running server and what tests need to talk to it."""

    url: str
    line: str
    keys: dict[str, str]
    process: ServerProcess
    mqtt: bool

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


def good_frame(seed: int = 0) -> bytes:
    return encode_bgr(part_image(defect=False, seed=seed), ".jpg")


def defect_frame(seed: int = 0) -> bytes:
    return encode_bgr(part_image(defect=True, seed=seed), ".png")


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    root = tmp_path_factory.mktemp(f"srv-{request.param}")
    models = root / "models"
    make_package(models)
    line = f"t{uuid.uuid4().hex[:10]}"
    mqtt = reachable(*SHARED_BROKER)
    extra = {
        "INSPECTOR_LINE": line,
        "INSPECTOR_NODE_ID": f"node-{line}",
        "INSPECTOR_MAX_BODY_BYTES": "300000",
        "INSPECTOR_SAMPLE_PASSES": "0",
        "INSPECTOR_MAX_DELAY_MS": "5",
        "INSPECTOR_PUBLISH_MAX_BACKOFF_S": "2",
    }
    if mqtt:
        extra["INSPECTOR_MQTT_URL"] = "mqtt://127.0.0.1:1883"
    with postgres_schema() if request.param == "postgres" else nullcontext() as db_url:
        if db_url:
            extra["INSPECTOR_DATABASE_URL"] = db_url
        env = base_env(root / "data", **extra)
        keys = {role: create_key(env, role) for role in ("camera", "reviewer", "admin")}
        server = ServerProcess(env, models, root / "server.log").start()
        try:
            yield Live(server.url, line, keys, server, mqtt)
        finally:
            server.stop()
            if request.session.testsfailed:
                print(f"--- server log ({request.param}) ---\n{server.log()[-6000:]}")
