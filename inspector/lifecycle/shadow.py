"""Shadow inference: a station's shadow model judges the same frames on the side.

The camera's answer never waits for it: `submit` is called after the active verdict is
committed, only schedules work, and returns at once. Shadow frames are decoded on their own
thread, run through the shadow model's batcher, and their results are group-committed on
their own database thread. The work is bounded (`max_pending`); beyond it frames are skipped
and counted, so a slow shadow model sheds load instead of queueing behind the line.
Each pending frame holds an admission slot on its shadow model, so a model is never unloaded
under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from inspector.core.names import ModelRef
from inspector.core.pipeline import PreparedFrame, Preprocessing
from inspector.lifecycle.batcher import MicroBatcher
from inspector.lifecycle.registry import ModelRegistry, ServedModel
from inspector.store.db import Database
from inspector.store.inspections import NewInspection
from inspector.store.shadow import NewShadowResult, record_shadow_batch

log = logging.getLogger(__name__)


class ShadowRunner:
    """Runs shadow models beside the active ones and records what they said."""

    def __init__(self, registry: ModelRegistry, db: Database, max_pending: int = 16) -> None:
        self.registry = registry
        self.db = db
        self.max_pending = max_pending
        self._decode = ThreadPoolExecutor(1, thread_name_prefix="shadow-decode")
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="shadow-commit")
        self._committer: MicroBatcher[NewShadowResult, None] = MicroBatcher(
            "shadow-committer", self._commit, self._db_thread, max_batch=256, max_delay_ms=100.0
        )
        self._tasks: set[asyncio.Task[None]] = set()
        #: Frames not shadowed since start (over max_pending, or the model's queue full);
        #: the shadow report shows it.
        self.skipped = 0

    def start(self) -> None:
        self._committer.start()

    def submit(
        self, station: str, data: bytes, record: NewInspection,
        active_input: tuple[Preprocessing, PreparedFrame] | None = None,
    ) -> bool:
        """Schedule the station's shadow model on this frame (never blocks, never raises).

        `active_input` is the active model's preprocessing and prepared frame: a shadow model
        with the same preprocessing (size, resize, colour, tiling) reuses it instead of decoding
        again."""
        ref = self.registry.shadows.get(station)
        model = self.registry.models.get(ref) if ref else None
        if model is None or ref == str(ModelRef(record.model_name, record.model_version)):
            return False
        if len(self._tasks) >= self.max_pending or \
                model.admission.in_flight >= model.admission.limit:
            self.skipped += 1
            return False
        slot = contextlib.ExitStack()
        slot.enter_context(model.admission.slot())  # taken now: the model stays loaded
        task = asyncio.get_running_loop().create_task(
            self._run(model, slot, station, data, record, active_input),
            name=f"shadow-{record.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, model: ServedModel, slot: contextlib.ExitStack, station: str,
                   data: bytes, record: NewInspection,
                   active_input: tuple[Preprocessing, PreparedFrame] | None) -> None:
        loop = asyncio.get_running_loop()
        try:
            with slot:
                if active_input is not None and active_input[0] == model.detector.preprocessing:
                    prepared = active_input[1]
                else:
                    prepared = await loop.run_in_executor(
                        self._decode, model.detector.prepare_bytes, data)
                judgement, batch = await model.batcher.submit(prepared)
            card = model.detector.card
            await self._committer.submit(NewShadowResult(
                inspection_id=record.id, station=station, created_at=record.created_at,
                active_name=record.model_name, active_version=record.model_version,
                active_score=record.score, active_verdict=record.verdict,
                shadow_name=card.name, shadow_version=card.version, shadow_score=judgement.score,
                shadow_threshold=judgement.threshold, shadow_verdict=judgement.verdict,
                shadow_label=judgement.label, shadow_ms=batch.run_ms / max(batch.size, 1),
            ))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("shadow %s on inspection %s failed: %s", model.ref, record.id, exc)

    def _commit(self, items: list[NewShadowResult]) -> list[None]:
        record_shadow_batch(self.db, items)
        return [None] * len(items)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Let pending shadow frames finish (up to `timeout_s`), then stop."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
        for task in list(self._tasks):
            task.cancel()
        await self._committer.stop()
        self._decode.shutdown(wait=True)
        self._db_thread.shutdown(wait=True)
