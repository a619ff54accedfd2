"""InspectionService's verdict listeners: after each group commit they get the records that
committed, in commit order, and never those the database refused; a listener that raises
fails no verdict. Real model, real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from inspector.server.service import InspectionResult
from inspector.store.db import Database
from inspector.store.inspections import NewInspection
from tests.server.conftest import defect_frame, good_frame
from tests.server.test_commit_isolation import bad_part_id, real_service, running, stored_ids


def test_listeners_get_only_committed_verdicts_in_order(db: Database, tmp_path: Path) -> None:
    service = real_service(db, tmp_path)
    heard: list[NewInspection] = []

    def broken(items: list[NewInspection]) -> None:
        raise RuntimeError("a listener with a bug")

    service.verdict_listeners += [broken, heard.extend]
    parts = [f"P{i}" for i in range(8)]
    parts[5] = bad_part_id(db)

    async def run() -> list[InspectionResult | BaseException]:
        async with running(service):
            sequential = [await service.inspect("cam-0", parts[i], good_frame(i))
                          for i in range(2)]
            together = await asyncio.gather(
                *(service.inspect(f"cam-{i}", parts[i], defect_frame(i) if i % 2 else
                                  good_frame(i)) for i in range(2, 8)),
                return_exceptions=True)
            return [*sequential, *together]

    before = stored_ids(db)
    answers = asyncio.run(run())
    refused = answers.pop(5)
    assert isinstance(refused, Exception)
    committed = [a.id for a in answers if isinstance(a, InspectionResult)]
    assert len(committed) == 7, answers  # the broken listener failed no verdict
    assert {h.id for h in heard} == set(committed) == stored_ids(db) - before
    assert len(heard) == 7
    assert [h.id for h in heard[:2]] == committed[:2]  # sequential frames: in commit order
