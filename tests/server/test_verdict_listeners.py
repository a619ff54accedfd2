"""InspectionService's verdict listeners: after each group commit they get the records that
committed, in commit order, and never those the database refused; a listener that raises
fails no verdict. Real model, real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from inspector.lifecycle.registry import ModelRegistry
from inspector.server.metrics import Metrics
from inspector.server.service import InspectionResult, InspectionService
from inspector.settings import Settings
from inspector.store.artifacts import ArtifactStore
from inspector.store.db import Database
from inspector.store.inspections import NewInspection
from tests.model_factory import make_package
from tests.server.conftest import defect_frame, good_frame
from tests.server.test_commit_isolation import bad_part_id, stored_ids


def test_listeners_get_only_committed_verdicts_in_order(db: Database, tmp_path: Path) -> None:
    make_package(tmp_path / "models")
    settings = Settings(models_dir=tmp_path / "models", data_dir=tmp_path / "data",
                        database_url=str(db.engine.url.render_as_string(hide_password=False)),
                        providers="cpu", auth_enabled=False, sample_passes=0.0)
    registry = ModelRegistry(settings)
    registry.load_all()
    service = InspectionService(settings, registry, db, ArtifactStore(tmp_path / "art"),
                                Metrics())
    heard: list[NewInspection] = []

    def broken(items: list[NewInspection]) -> None:
        raise RuntimeError("a listener with a bug")

    service.verdict_listeners += [broken, heard.extend]
    parts = [f"P{i}" for i in range(8)]
    parts[5] = bad_part_id(db)

    async def run() -> list[InspectionResult | BaseException]:
        registry.start()
        service.start()
        try:
            sequential = [await service.inspect("cam-0", parts[i], good_frame(i))
                          for i in range(2)]
            together = await asyncio.gather(
                *(service.inspect(f"cam-{i}", parts[i], defect_frame(i) if i % 2 else
                                  good_frame(i)) for i in range(2, 8)),
                return_exceptions=True)
            return [*sequential, *together]
        finally:
            await service.stop()
            await registry.stop()

    before = stored_ids(db)
    answers = asyncio.run(run())
    refused = answers.pop(5)
    assert isinstance(refused, Exception)
    committed = [a.id for a in answers if isinstance(a, InspectionResult)]
    assert len(committed) == 7, answers  # the broken listener failed no verdict
    assert {h.id for h in heard} == set(committed) == stored_ids(db) - before
    assert len(heard) == 7
    assert [h.id for h in heard[:2]] == committed[:2]  # sequential frames: in commit order
