"""A real `inspector serve` for the review-page tests, and helpers to post frames, sign in
and read figures off the pages."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import httpx
import pytest

from tests.model_factory import make_package
from tests.server.conftest import BACKENDS, Live
from tests.server.harness import ServerProcess, base_env, create_key, postgres_schema
from tests.ui.frames import part_frame


def _start(root: Path, db_url: str | None) -> tuple[ServerProcess, Live]:
    make_package(root / "models")
    line = f"ui{uuid.uuid4().hex[:8]}"
    extra = {"INSPECTOR_LINE": line, "INSPECTOR_NODE_ID": f"node-{line}",
             "INSPECTOR_SAMPLE_PASSES": "0", "INSPECTOR_MAX_DELAY_MS": "2"}
    if db_url:
        extra["INSPECTOR_DATABASE_URL"] = db_url
    env = base_env(root / "data", **extra)
    keys = {role: create_key(env, role) for role in ("camera", "reviewer", "admin")}
    server = ServerProcess(env, root / "models", root / "server.log").start()
    return server, Live(server.url, line, keys, server, mqtt=False)


@pytest.fixture(scope="module", params=BACKENDS)
def ui_live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Live]:
    """A server per module and backend (SQLite; PostgreSQL when reachable)."""
    root = tmp_path_factory.mktemp(f"ui-{request.param}")
    with postgres_schema() if request.param == "postgres" else nullcontext() as db_url:
        server, live = _start(root, db_url)
        try:
            yield live
        finally:
            server.stop()
            if request.session.testsfailed:
                print(f"--- server log ({request.param}) ---\n{server.log()[-6000:]}")


@pytest.fixture(scope="module")
def ui_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server on SQLite only (the browser test runs once)."""
    server, live = _start(tmp_path_factory.mktemp("ui-browser"), None)
    try:
        yield live
    finally:
        server.stop()


def post_frame(live: Live, station: str, part_id: str, *, brightness: float = 80.0,
               defect: bool = False, seed: int = 0) -> dict[str, object]:
    r = httpx.post(f"{live.url}/v1/inspect", params={"station": station, "part_id": part_id},
                   content=part_frame(brightness=brightness, defect=defect, seed=seed),
                   headers={"Content-Type": "image/jpeg", **live.auth("camera")}, timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def api_review(live: Live, inspection_id: object, label: str, defect_type: str | None = None
               ) -> None:
    r = httpx.post(f"{live.url}/v1/inspections/{inspection_id}/review",
                   json={"label": label, "defect_type": defect_type},
                   headers=live.auth("reviewer"), timeout=30)
    assert r.status_code == 201, r.text


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def form_token(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def sign_in(live: Live, role: str = "reviewer") -> httpx.Client:
    """An httpx client holding a review-page session for a key of `role`."""
    client = httpx.Client(base_url=live.url, timeout=30)
    page = client.get("/ui/login")
    r = client.post("/ui/login", data={"key": live.keys[role], "csrf": form_token(page.text),
                                       "next": "/ui/"})
    assert r.status_code == 303, r.text
    assert "insp_session" in client.cookies
    return client


def metric(html: str, name: str) -> str:
    """The raw `data-value` of a `data-metric` element on a station page."""
    found = re.search(rf'data-metric="{name}" data-value="([^"]*)"', html)
    assert found, f"no metric {name} on the page"
    return found.group(1)
