"""A real `inspector serve` process (small real model, camera and reviewer keys) shared by
the adapter tests of a module, and helpers to read what it recorded."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.model_factory import make_package
from tests.server.conftest import Live
from tests.server.harness import ServerProcess, base_env, create_key


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("connect")
    models = root / "models"
    make_package(models)
    line = f"t{uuid.uuid4().hex[:10]}"
    env = base_env(root / "data", INSPECTOR_LINE=line, INSPECTOR_SAMPLE_PASSES="1",
                   INSPECTOR_MAX_DELAY_MS="5")
    keys = {role: create_key(env, role) for role in ("camera", "reviewer")}
    server = ServerProcess(env, models, root / "server.log").start()
    try:
        yield Live(server.url, line, keys, server, mqtt=False)
    finally:
        server.stop()


def records(live: Live, station: str) -> list[dict[str, object]]:
    r = httpx.get(f"{live.url}/v1/inspections", params={"station": station, "limit": 500},
                  headers=live.auth("reviewer"), timeout=10)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
