"""A real `inspector serve` per test module for registry tests, and frames with known scores.

The factory model scores brightness (score = brightest 4x4 cell / 255), so a frame with a blob
of gray level L scores about L/255: tests choose scores by choosing levels.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import encode_bgr
from tests.model_factory import make_package, part_image
from tests.server.harness import ServerProcess, base_env, create_key


def frame(level: int = 0, seed: int = 0) -> bytes:
    """A dark part (PNG); with `level` > 0 a blob of that gray level (score ~ level/255)."""
    img = part_image(defect=level > 0, seed=seed)
    if level:
        img[img == 250] = level
    return encode_bgr(np.ascontiguousarray(img), ".png")


@dataclass
class RegServer:
    url: str
    keys: dict[str, str]
    process: ServerProcess
    models_dir: Path
    data_dir: Path

    def auth(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def inspect(self, station: str, body: bytes, client: httpx.Client | None = None
                ) -> httpx.Response:
        post = client.post if client is not None else httpx.post
        return post(f"{self.url}/v1/inspect", params={"station": station}, content=body,
                    headers={"Content-Type": "image/png", **self.auth("camera")}, timeout=60)

    def upload(self, data: bytes, ctype: str = "application/gzip", role: str = "admin"
               ) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/models", content=data, timeout=120,
                          headers={"Content-Type": ctype, **self.auth(role)})

    def call(self, method: str, path: str, role: str = "admin", **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", headers=self.auth(role), timeout=60,
                             **kw)

    def deploy(self, station: str, model: str, mode: str = "active") -> httpx.Response:
        return self.call("PUT", f"/v1/stations/{station}/model",
                         json={"model": model, "mode": mode})

    def loaded(self) -> list[str]:
        models = self.call("GET", "/v1/models").json()["models"]
        return sorted(f"{m['name']}:{m['version']}" for m in models)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.data_dir / "inspector.db") as conn:
            return conn.execute(sql).fetchall()


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def start_server(root: Path, stations: dict[str, str], **extra: str) -> RegServer:
    models = root / "models"
    if not models.exists():
        make_package(models)  # tiny:1
    env = base_env(root / "data", INSPECTOR_STATIONS=json.dumps(stations),
                   INSPECTOR_SAMPLE_PASSES="1", INSPECTOR_MAX_DELAY_MS="2", **extra)
    keys = {role: create_key(env, role) for role in ("camera", "reviewer", "admin")}
    server = ServerProcess(env, models, root / "server.log").start()
    return RegServer(server.url, keys, server, models, root / "data")


@contextlib.contextmanager
def running(request: pytest.FixtureRequest, root: Path, stations: dict[str, str],
            **extra: str) -> Iterator[RegServer]:
    """`start_server` for a fixture: stopped afterwards, its log shown when a test failed."""
    server = start_server(root, stations, **extra)
    try:
        yield server
    finally:
        server.process.stop()
        if request.session.testsfailed:
            print(f"--- server log ---\n{server.process.log()[-6000:]}")


@pytest.fixture(scope="module")
def reg(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[RegServer]:
    root = tmp_path_factory.mktemp("registry")
    with running(request, root, {"s1": "tiny:1"}, INSPECTOR_MAX_PACKAGE_BYTES="400000") as server:
        yield server


@pytest.fixture
def pkg_root(tmp_path: Path) -> Path:
    """Where tests build packages before packing them (not the server's models folder)."""
    root = tmp_path / "build"
    root.mkdir()
    return root
