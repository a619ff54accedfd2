"""With auth off (loopback only) the review pages open without a key; such a session stops
working as soon as auth is back on."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inspector.app import create_app
from inspector.settings import Settings
from tests.model_factory import make_package
from tests.ui.conftest import form_token

pytestmark = pytest.mark.slow


def settings(tmp_path: Path, auth: bool) -> Settings:
    return Settings(models_dir=tmp_path / "models", data_dir=tmp_path / "data",
                    auth_enabled=auth, providers="cpu", work_threads=1)


def test_no_auth_session_ends_when_auth_returns(tmp_path: Path) -> None:
    make_package(tmp_path / "models")
    with TestClient(create_app(settings(tmp_path, auth=False))) as client:
        page = client.get("/ui/login")
        assert "Authentication is off" in page.text and 'name="key"' not in page.text
        r = client.post("/ui/login", data={"csrf": form_token(page.text)},
                        follow_redirects=False)
        assert r.status_code == 303
        queue = client.get("/ui/")
        assert queue.status_code == 200 and "anonymous" in queue.text
        cookie = client.cookies["insp_session"]
    with TestClient(create_app(settings(tmp_path, auth=True))) as client:
        client.cookies.set("insp_session", cookie)
        r = client.get("/ui/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
