"""One frame's way through the server: admit, decode, batch-infer, store artifacts, commit.

Framework-free apart from asyncio, so tests can drive it without HTTP. The answer is built only
after the record (with its outbox rows) is committed: an acknowledged verdict is never lost.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from inspector.core import images
from inspector.core.pipeline import Judgement, PreparedFrame
from inspector.server.batcher import MicroBatcher
from inspector.server.errors import ServiceUnavailableError
from inspector.server.metrics import Metrics
from inspector.server.registry import ModelRegistry, ServedModel
from inspector.server.schemas import InspectResponse, ModelRef, Timings, links_for
from inspector.server.shadow import ShadowRunner
from inspector.settings import Settings
from inspector.store.artifacts import ArtifactStore, SavedArtifacts
from inspector.store.db import Database
from inspector.store.inspections import NewInspection, new_id, record_batch
from inspector.store.models import utcnow
from inspector.store.outbox import PendingEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    saved: SavedArtifacts | None
    heatmap_jpeg: bytes | None


class InspectionService:
    """Turns frame bytes into a committed, published verdict."""

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        db: Database,
        artifacts: ArtifactStore,
        metrics: Metrics,
        on_commit: Callable[[dict[str, list[PendingEvent]]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.db = db
        self.artifacts = artifacts
        self.metrics = metrics
        self._on_commit = on_commit
        self.work_pool = ThreadPoolExecutor(settings.work_threads, thread_name_prefix="work")
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="commit")
        self._destinations = settings.destinations
        self.committer: MicroBatcher[NewInspection, None] = MicroBatcher(
            "committer", self._commit, self._db_thread, max_batch=256, max_delay_ms=0.0
        )
        #: Runs stations' shadow models on committed frames (set by the app factory).
        self.shadow: ShadowRunner | None = None

    def start(self) -> None:
        self.committer.start()
        if self.shadow is not None:
            self.shadow.start()

    async def stop(self) -> None:
        if self.shadow is not None:
            await self.shadow.stop()
        await self.committer.stop()
        self.work_pool.shutdown(wait=True)
        self._db_thread.shutdown(wait=True)

    def _commit(self, items: list[NewInspection]) -> list[None]:
        if any(item.image_key for item in items):
            self.artifacts.flush()  # the evidence is on disk before the records point at it
        pending = record_batch(self.db, items, self._destinations)
        if self._on_commit is not None:
            self._on_commit(pending)
        return [None] * len(items)

    async def inspect(
        self, station: str, part_id: str | None, data: bytes, inline_heatmap: bool = False
    ) -> InspectResponse:
        """Judge one frame for a station; raises InspectorError subclasses for bad input."""
        t0 = time.perf_counter()
        model = self.registry.for_station(station)
        loop = asyncio.get_running_loop()
        with model.admission.slot():
            prepared = await loop.run_in_executor(
                self.work_pool, model.detector.prepare_bytes, data
            )
            judgement, batch = await model.batcher.submit(prepared)
            rec_id, created_at = new_id(), utcnow()
            store = judgement.verdict == "fail" or random.random() < self.settings.sample_passes
            rendered = Rendered(None, None)
            if store or inline_heatmap:
                rendered = await loop.run_in_executor(
                    self.work_pool, self._render, model, prepared, judgement, data, rec_id,
                    created_at, store,
                )
            card = model.detector.card
            saved = rendered.saved
            record = NewInspection(
                id=rec_id, created_at=created_at, node=self.settings.node_id,
                line=self.settings.line, station=station, part_id=part_id,
                model_name=card.name, model_version=card.version, score=judgement.score,
                threshold=judgement.threshold, verdict=judgement.verdict, label=judgement.label,
                frame_width=prepared.frame.original_width,
                frame_height=prepared.frame.original_height,
                queue_ms=batch.queue_ms, decode_ms=prepared.decode_ms,
                inference_ms=batch.run_ms, total_ms=(time.perf_counter() - t0) * 1000.0,
                image_key=saved.image_key if saved else None,
                heatmap_key=saved.heatmap_key if saved else None,
                artifact_bytes=saved.nbytes if saved else 0,
            )
            t_rec = time.perf_counter()
            try:
                await self.committer.submit(record)
            except SQLAlchemyError as exc:
                if saved:
                    self.artifacts.remove(saved.image_key)
                    self.artifacts.remove(saved.heatmap_key)
                log.error("could not record inspection %s: %s", rec_id, exc)
                raise ServiceUnavailableError(
                    "the database is unavailable: this verdict was not recorded",
                    hint="resend the frame; check the database connection (see /readyz)",
                ) from exc
            if self.shadow is not None:
                # Schedules only, never waits; the decoded frame is reused when the shadow
                # model takes the same input.
                self.shadow.submit(station, data, record, (card.input, prepared))
        record_ms = (time.perf_counter() - t_rec) * 1000.0
        total_ms = (time.perf_counter() - t0) * 1000.0
        self._observe(station, judgement, prepared, batch.queue_ms, batch.run_ms, record_ms,
                      total_ms, saved is not None)
        inline = None
        if inline_heatmap and rendered.heatmap_jpeg is not None:
            inline = "data:image/jpeg;base64," + base64.b64encode(rendered.heatmap_jpeg).decode()
        return InspectResponse(
            id=rec_id, created_at=created_at, station=station, part_id=part_id,
            verdict=judgement.verdict, score=judgement.score, threshold=judgement.threshold,
            label=judgement.label, model=ModelRef(name=card.name, version=card.version),
            timings=Timings(decode_ms=round(prepared.decode_ms, 3),
                            queue_ms=round(batch.queue_ms, 3),
                            inference_ms=round(batch.run_ms, 3), record_ms=round(record_ms, 3),
                            total_ms=round(total_ms, 3), batch_size=batch.size),
            links=links_for(rec_id, saved is not None,
                            saved is not None and saved.heatmap_key is not None),
            heatmap_inline=inline,
        )

    def _render(
        self, model: ServedModel, prepared: PreparedFrame, judgement: Judgement, data: bytes,
        rec_id: str, created_at: datetime, store: bool,
    ) -> Rendered:
        overlay = model.detector.overlay(prepared, judgement)
        heat = images.encode(overlay, "jpeg", quality=85)
        saved = None
        if store:
            saved = self.artifacts.save(rec_id, created_at, data, prepared.frame.format, heat,
                                        durable=False)  # flushed in _commit, per group
        return Rendered(saved, heat)

    def _observe(
        self, station: str, j: Judgement, prepared: PreparedFrame, queue_ms: float,
        run_ms: float, record_ms: float, total_ms: float, stored: bool,
    ) -> None:
        m = self.metrics
        m.inspections.labels(station=station, verdict=j.verdict).inc()
        for stage, ms in (("decode", prepared.decode_ms), ("queue", queue_ms),
                          ("inference", run_ms), ("record", record_ms), ("total", total_ms)):
            m.stage_ms.labels(stage=stage).observe(ms)
        if stored:
            m.artifacts_written.inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("inspection", extra={"station": station, "verdict": j.verdict,
                                           "score": round(j.score, 5),
                                           "total_ms": round(total_ms, 2)})
