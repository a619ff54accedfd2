"""The real app in-process for the fuzz suites: `create_app` with a tiny model package, a
migrated SQLite database and one key per role; services run as under `inspector serve`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from inspector.app import create_app
from inspector.settings import Settings, load_settings
from inspector.store.db import Database
from inspector.store.keys import create_key
from tests.model_factory import make_package


@dataclass
class FuzzApp:
    app: FastAPI
    settings: Settings
    keys: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


def build_fuzz_app(root: Path) -> FuzzApp:
    """A fresh app over its own data folder (not started: the caller runs its lifespan)."""
    make_package(root / "models")
    # Every frame stores its image and heatmap, to fuzz the artifact path as well.
    settings = load_settings(models_dir=root / "models", data_dir=root / "data",
                             providers="cpu", work_threads=2, sample_passes=1.0,
                             max_delay_ms=2.0, retention_interval_s=3600.0)
    settings.data_dir.mkdir(parents=True)
    db = Database(settings.resolved_database_url)
    db.migrate()
    keys = {role: create_key(db, role, f"fuzz-{role}")[1]
            for role in ("camera", "reviewer", "admin")}
    db.dispose()
    return FuzzApp(create_app(settings), settings, keys)


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> FuzzApp:
    return build_fuzz_app(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def client(fuzz_app: FuzzApp) -> Iterator[TestClient]:
    """A started app; unhandled exceptions surface as test failures with their traceback."""
    with TestClient(fuzz_app.app, raise_server_exceptions=True) as c:
        yield c
