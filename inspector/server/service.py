"""One frame's way through the server: admit, decode, batch-infer, store artifacts, commit.

Framework-free apart from asyncio, so tests can drive it without HTTP. The answer is built only
after the record (with its outbox rows) is committed: an acknowledged verdict is never lost.

Admission comes first, before the body is read (`admit`): a slot in the model's count bound and
a reservation in the process-wide memory budget for the declared body; once the header is known
the reservation grows to the frame's whole estimate (`judge`), before a pixel is decoded. Heavy
frames (over `heavy_frame_pixels`) are decoded and rendered on their own single thread, so a
burst of them cannot hold up ordinary frames from other stations.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import cv2
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from inspector.core import heatmap, images
from inspector.core.errors import InspectorError
from inspector.core.names import utcnow
from inspector.core.pipeline import Judgement, PreparedFrame
from inspector.lifecycle.batcher import MemoryBudget, MicroBatcher, Reservation
from inspector.lifecycle.errors import ServiceUnavailableError
from inspector.lifecycle.registry import ModelRegistry, ServedModel
from inspector.lifecycle.shadow import ShadowRunner
from inspector.publish.messages import destination_names, verdict_message
from inspector.server.metrics import Metrics
from inspector.settings import Settings
from inspector.store import artifact_blobs
from inspector.store.artifacts import ArtifactStore, SavedArtifacts
from inspector.store.db import Database, database_unavailable
from inspector.store.inspections import (
    NewInspection,
    find_by_request_key,
    new_id,
    record_batch_isolated,
)
from inspector.store.models import Inspection
from inspector.store.outbox import PendingEvent

log = logging.getLogger(__name__)

#: Receives committed verdicts; see `InspectionService.verdict_listeners`.
VerdictListener = Callable[[list[NewInspection]], None]


@dataclass(frozen=True)
class InspectionResult:
    """One judged and recorded frame: what the camera is answered (the HTTP route turns it
    into `InspectResponse`)."""

    id: str
    created_at: datetime
    station: str
    part_id: str | None
    verdict: Literal["pass", "fail"]
    score: float
    threshold: float
    label: str | None
    model_name: str
    model_version: str
    decode_ms: float
    queue_ms: float
    inference_ms: float
    record_ms: float
    total_ms: float
    batch_size: int
    image_stored: bool
    heatmap_stored: bool
    #: `data:image/jpeg;base64,...` overlay when asked for.
    heatmap_inline: str | None = None
    #: Answered from the record of an earlier request with the same Idempotency-Key.
    replayed: bool = False

    @classmethod
    def of_record(cls, row: Inspection) -> InspectionResult:
        """The answer an earlier request got, rebuilt from its record (a replay)."""
        return cls(
            id=row.id, created_at=row.created_at, station=row.station, part_id=row.part_id,
            verdict=row.verdict,  # type: ignore[arg-type]
            score=row.score, threshold=row.threshold, label=row.label,
            model_name=row.model_name, model_version=row.model_version,
            decode_ms=row.decode_ms, queue_ms=row.queue_ms, inference_ms=row.inference_ms,
            record_ms=0.0, total_ms=row.total_ms, batch_size=0,
            image_stored=row.image_key is not None, heatmap_stored=row.heatmap_key is not None,
            replayed=True,
        )


@dataclass(frozen=True)
class Rendered:
    saved: SavedArtifacts | None
    heatmap_jpeg: bytes | None


class RecordRejectedError(InspectorError):
    """The database refused this one record (its data, not the connection)."""

    status_code = 422


class RenderError(InspectorError):
    """The heatmap overlay of a frame could not be drawn or encoded."""

    status_code = 413


@dataclass(frozen=True)
class Admitted:
    """A frame let in before its body is read: its model's slot and its memory reservation."""

    station: str
    model: ServedModel
    reservation: Reservation


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
        #: Decodes and renders frames over `heavy_frame_pixels`, one at a time.
        self.heavy_pool = ThreadPoolExecutor(1, thread_name_prefix="heavy")
        #: Bytes every frame in flight may hold, all models together.
        self.budget = MemoryBudget(settings.max_inflight_bytes)
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="commit")
        self._share_pool = (ThreadPoolExecutor(1, thread_name_prefix="share")
                            if settings.shares_storage else None)
        self._destinations = destination_names(settings)
        self.committer: MicroBatcher[NewInspection, Exception | None] = MicroBatcher(
            "committer", self._commit, self._db_thread, max_batch=256, max_delay_ms=0.0
        )
        #: Runs stations' shadow models on committed frames (set by the app factory).
        self.shadow: ShadowRunner | None = None
        #: Called on the commit thread after each group commit with the records that committed,
        #: in commit order (refused ones left out). A listener must return at once: hand the
        #: work to another thread or loop (see inspector.opcua.feed).
        self.verdict_listeners: list[VerdictListener] = []

    def start(self) -> None:
        self.committer.start()
        if self.shadow is not None:
            self.shadow.start()

    async def stop(self) -> None:
        if self.shadow is not None:
            await self.shadow.stop()
        await self.committer.stop()
        self.work_pool.shutdown(wait=True)
        self.heavy_pool.shutdown(wait=True)
        self._db_thread.shutdown(wait=True)
        if self._share_pool is not None:
            self._share_pool.shutdown(wait=True)

    def _commit(self, items: list[NewInspection]) -> list[Exception | None]:
        """Group commit; per item None (committed) or the error that refused that record alone.
        Raises when the database itself is unavailable."""
        if any(item.image_key for item in items):
            self.artifacts.flush()  # the evidence is on disk before the records point at it
        pending, outcomes = record_batch_isolated(self.db, items, self._destinations,
                                                 verdict_message)
        if self._on_commit is not None:
            self._on_commit(pending)
        committed = [item for item, refused in zip(items, outcomes, strict=True) if refused is None]
        if committed:
            self._tell_listeners(committed)
            if self._share_pool is not None:
                self._share_pool.submit(self._share, committed)
        return outcomes

    def _tell_listeners(self, committed: list[NewInspection]) -> None:
        """Hand the verdicts just committed, in commit order, to each listener. A listener that
        raises is logged and skipped: it can never fail or undo a committed verdict."""
        for listener in self.verdict_listeners:
            try:
                listener(committed)
            except Exception:
                log.exception("verdict listener %r failed; the verdicts stay committed",
                              listener)

    def _share(self, items: list[NewInspection]) -> None:
        """Copy flagged frames' artifacts into the shared database (fleet storage); a failure
        costs only other nodes' view of those frames, never the verdicts."""
        try:
            artifact_blobs.share(self.db, self.artifacts, items)
        except Exception as exc:
            log.warning("flagged frames' artifacts not shared with the fleet: %s", exc)

    @contextmanager
    def admit(self, station: str, declared_bytes: int | None = None) -> Iterator[Admitted]:
        """Let a frame in before its body is read (call on the event loop): a slot of the
        station's model and `declared_bytes` (its Content-Length, when known) of the memory
        budget, held for the block. Raises UnknownStationError, ServerBusyError (503) or
        PayloadTooLargeError (413) at once, so a refused camera does not upload first."""
        model = self.registry.for_station(station)
        with model.admission.slot(), self.budget.reserve(declared_bytes or 0) as held:
            yield Admitted(station, model, held)

    async def inspect(
        self, station: str, part_id: str | None, data: bytes, inline_heatmap: bool = False,
        request_key: str | None = None,
    ) -> InspectionResult:
        """Judge one frame for a station; raises InspectorError subclasses for bad input."""
        if request_key is not None and (earlier := await self.replay(station, request_key)):
            return earlier
        with self.admit(station, len(data)) as admitted:
            return await self.judge(admitted, part_id, data, inline_heatmap, request_key)

    async def replay(self, station: str, request_key: str) -> InspectionResult | None:
        """The recorded answer of an earlier request with this Idempotency-Key, if any."""
        row = await asyncio.get_running_loop().run_in_executor(
            self.work_pool, find_by_request_key, self.db, station, request_key)
        return None if row is None else InspectionResult.of_record(row)

    async def judge(
        self, admitted: Admitted, part_id: str | None, data: bytes, inline_heatmap: bool = False,
        request_key: str | None = None,
    ) -> InspectionResult:
        """Judge an admitted frame's bytes (the body, read after `admit`). With a
        `request_key` already recorded at the station (two copies of one request in flight),
        the first record's answer is returned and this judgement dropped."""
        t0 = time.perf_counter()
        station, model = admitted.station, admitted.model
        loop = asyncio.get_running_loop()
        header = model.detector.probe(data)  # header only: microseconds
        # 503 when it does not fit now, 413 when it would not fit in the whole budget.
        admitted.reservation.grow_to(model.detector.memory_estimate(header, len(data)))
        pool = self.heavy_pool if header.pixels > self.settings.heavy_frame_pixels \
            else self.work_pool
        prepared = await loop.run_in_executor(
            pool, model.detector.prepare_bytes, data, header
        )
        judgement, batch = await model.batcher.submit(prepared)
        rec_id, created_at = new_id(), utcnow()
        store = judgement.verdict == "fail" or random.random() < self.settings.sample_passes
        rendered = Rendered(None, None)
        if store or inline_heatmap:
            rendered = await loop.run_in_executor(
                pool, self._render, model, prepared, judgement, data, rec_id,
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
            artifact_bytes=saved.nbytes if saved else 0, request_key=request_key,
        )
        t_rec = time.perf_counter()
        refused: Exception | None
        try:
            refused, _ = await self.committer.submit(record)
        except SQLAlchemyError as exc:
            refused = exc
        if refused is not None:
            if saved:
                self.artifacts.remove(saved.image_key)
                self.artifacts.remove(saved.heatmap_key)
            if request_key is not None and isinstance(refused, IntegrityError) and (
                    earlier := await self.replay(station, request_key)):
                return earlier
            if not database_unavailable(refused):
                reason = str(getattr(refused, "orig", None) or refused).strip()[:200]
                log.warning("the database refused inspection %s: %s", rec_id, reason)
                raise RecordRejectedError(
                    "the database refused this record, so this verdict was not recorded: "
                    f"{type(refused).__name__}: {reason}",
                    hint="check part_id and the frame's fields for characters or sizes the "
                         "database cannot store",
                ) from refused
            raise ServiceUnavailableError(
                "the database is unavailable: this verdict was not recorded",
                hint="resend the frame; check the database connection (see /readyz)",
            ) from refused
        if self.shadow is not None:
            # Schedules only, never waits; the decoded frame is reused when the shadow
            # model takes the same input.
            self.shadow.submit(station, data, record,
                              (model.detector.preprocessing, prepared))
        record_ms = (time.perf_counter() - t_rec) * 1000.0
        total_ms = (time.perf_counter() - t0) * 1000.0
        self._observe(station, judgement, prepared, batch.queue_ms, batch.run_ms, record_ms,
                      total_ms, saved is not None)
        inline = None
        if inline_heatmap and rendered.heatmap_jpeg is not None:
            inline = "data:image/jpeg;base64," + base64.b64encode(rendered.heatmap_jpeg).decode()
        return InspectionResult(
            id=rec_id, created_at=created_at, station=station, part_id=part_id,
            verdict=judgement.verdict, score=judgement.score, threshold=judgement.threshold,
            label=judgement.label, model_name=card.name, model_version=card.version,
            decode_ms=prepared.decode_ms, queue_ms=batch.queue_ms, inference_ms=batch.run_ms,
            record_ms=record_ms, total_ms=total_ms, batch_size=batch.size,
            image_stored=saved is not None,
            heatmap_stored=saved is not None and saved.heatmap_key is not None,
            heatmap_inline=inline,
        )

    def _render(
        self, model: ServedModel, prepared: PreparedFrame, judgement: Judgement, data: bytes,
        rec_id: str, created_at: datetime, store: bool,
    ) -> Rendered:
        try:
            overlay = model.detector.overlay(prepared, judgement,
                                             max_side=heatmap.SERVER_MAX_SIDE)
            heat = images.encode(overlay, "jpeg", quality=85)
        except (cv2.error, RuntimeError) as exc:
            h, w = prepared.frame.rgb.shape[:2]
            raise RenderError(f"the heatmap overlay of a {w}x{h} frame could not be drawn: "
                              f"{str(exc).strip()[:200]}",
                              hint="send smaller frames (see max_side in settings)") from exc
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
        m.count_verdict(station, j.verdict)
        for stage, ms in (("decode", prepared.decode_ms), ("queue", queue_ms),
                          ("inference", run_ms), ("record", record_ms), ("total", total_ms)):
            m.stage_ms.labels(stage=stage).observe(ms)
        if stored:
            m.artifacts_written.inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("inspection", extra={"station": station, "verdict": j.verdict,
                                           "score": round(j.score, 5),
                                           "total_ms": round(total_ms, 2)})
