"""A real `inspector serve` process (small real model, camera and reviewer keys) shared by
the adapter tests of a module, and helpers to read what it recorded."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.model_factory import make_package
from tests.server.conftest import Live
from tests.server.harness import ServerProcess, base_env, create_key

#: Body limit of the test server: the adapters' frames are far below it, a refused test frame
#: above it.
MAX_BODY_BYTES = 200_000

@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("connect")
    models = root / "models"
    make_package(models)
    line = f"t{uuid.uuid4().hex[:10]}"
    env = base_env(root / "data", INSPECTOR_LINE=line, INSPECTOR_SAMPLE_PASSES="1",
                   INSPECTOR_MAX_DELAY_MS="5", INSPECTOR_MAX_BODY_BYTES=str(MAX_BODY_BYTES))
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


class Running:
    """An adapter's `run(stop)` on a thread, stopped on exit; what it raised is raised here."""

    def __init__(self, run: Callable[[threading.Event], None]) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(run,), daemon=True)

    def _run(self, run: Callable[[threading.Event], None]) -> None:
        try:
            run(self.stop)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
