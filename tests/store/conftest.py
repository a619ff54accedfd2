"""A migrated database per test: SQLite in a temp folder, and PostgreSQL in a fresh schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.store.db import Database
from tests.server.harness import postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'inspector.db'}")
        database.migrate()
        yield database
        database.dispose()
        return
    with postgres_schema() as url:
        database = Database(url)
        database.migrate()
        yield database
        database.dispose()
