"""Deploy, promote, roll back and install uploads without dropping an in-flight request.

Every change runs on the event loop under one lock: the database first (a failed write changes
nothing), then the in-memory mapping flips in one step. A request picks its model and takes an
admission slot in a single event-loop step (`InspectionService.inspect`), so after a flip no
new request reaches the old model while those already admitted finish on it. A model that
nothing needs any more (no station's active, shadow or rollback target, not the default) is
unloaded once its admission count reaches zero; the previous active model of each station
stays loaded, so a rollback is instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from inspector.core.names import ModelRef
from inspector.core.pipeline import Detector
from inspector.core.signing import Verification
from inspector.lifecycle import distribution, uploads
from inspector.lifecycle.archive import storage_error
from inspector.lifecycle.errors import (
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    UnknownStationError,
)
from inspector.lifecycle.registry import ModelRegistry, ServedModel
from inspector.settings import Settings
from inspector.store import deployments, nodes
from inspector.store.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StationState:
    """Which models a station uses after a change."""

    station: str
    active: str | None
    shadow: str | None
    #: What `rollback` would return to.
    previous: str | None


class QueueGauges(Protocol):
    """Where the deployer reports the queues of the models it loads and unloads
    (inspector.server.metrics.Metrics on the server)."""

    def track_queue(self, model: str, depth: Callable[[], int]) -> None: ...

    def forget_queue(self, model: str) -> None: ...


class Deployer:
    """Station deployments and registry changes, serialized and safe under load."""

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        db: Database,
        metrics: QueueGauges,
        fleet: distribution.Fleet | None = None,
    ) -> None:
        self.settings = settings
        #: The package store and how fetched packages are checked; None on a lone node.
        self.fleet = fleet
        #: Called after every change written to the desired state (the reconciler's poke).
        self.on_change: Callable[[], None] | None = None
        self.registry = registry
        self.db = db
        self.metrics = metrics
        #: station -> the model that was active before the current one (rollback target).
        self.previous: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._retiring: dict[str, asyncio.Task[None]] = {}

    def restore(self) -> None:
        """At startup (blocking): shadows and rollback targets from the deployment history."""
        uploads.clear_stale_uploads(self.settings.models_dir)
        reg = self.registry
        for d in deployments.current_deployments(self.db, "shadow"):
            ref = str(ModelRef(d.model_name, d.model_version))
            if ref in reg.models:
                reg.shadows[d.station] = ref
            else:
                log.error("station %s has shadow %s, which is not loaded; no shadow runs there",
                          d.station, ref)
        for d in deployments.current_deployments(self.db, "active"):
            prev = deployments.previous_active(self.db, d.station)
            if prev is not None:
                self.previous[d.station] = str(prev)

    async def state(self, station: str) -> StationState:
        """What runs at `station` here, or the desired state where another node serves it."""
        if self.settings.serves(station):
            return StationState(station, self.active_ref(station),
                                self.registry.shadows.get(station), self.previous.get(station))
        active, shadow = await self._current(station)
        prev = await asyncio.to_thread(deployments.previous_active, self.db, station)
        return StationState(station, active, shadow, str(prev) if prev else None)

    def active_ref(self, station: str) -> str | None:
        """The model answering `station` now (None when no model would)."""
        try:
            return self.registry.for_station(station).ref
        except UnknownStationError:
            return None

    # -- uploads ---------------------------------------------------------------------------

    def check_new(self, name: str, version: str, sha256: str | None = None) -> None:
        """ConflictError when name:version is loaded, installed, or recorded with another
        checksum: a version always means one model."""
        ref = str(ModelRef(name, version))
        hint = "give the package a new version in card.json (train into models/NAME/NEW)"
        if ref in self.registry.models:
            raise ConflictError(f"{ref} is already loaded", hint=hint)
        if (self.settings.models_dir / name / version).exists():
            raise ConflictError(f"{ref} is already installed in the models folder", hint=hint)
        known = deployments.model_version_sha(self.db, name, version)
        if known is not None and sha256 is not None and known != sha256:
            raise ConflictError(f"{ref} was registered before with another checksum", hint=hint)

    async def install(self, staged: uploads.StagedPackage) -> ServedModel:
        """Move a validated upload into the models folder, record it and start serving it."""
        card = staged.detector.card
        async with self._lock:
            await asyncio.to_thread(self.check_new, card.name, card.version, card.onnx_sha256)
            try:
                detector = await asyncio.to_thread(
                    uploads.install, staged, self.settings.models_dir)
            except FileExistsError as exc:
                raise ConflictError(f"{card.ref} is already installed") from exc
            except OSError as exc:
                raise storage_error(exc, self.settings.models_dir) from exc
            await asyncio.to_thread(
                deployments.register_model_version, self.db, name=card.name,
                version=card.version, kind=card.kind, sha256=card.onnx_sha256,
                card_json=card.model_dump_json(), path=str(detector.package.root))
            if self.fleet is not None:
                await asyncio.to_thread(distribution.share, self.fleet, detector.package.root,
                                        card)
            return self._serve(detector, staged.signature)

    def _serve(self, detector: Detector, signature: Verification | None) -> ServedModel:
        served = self.registry.adopt(detector, signature)
        served.batcher.start()
        self.metrics.track_queue(served.ref, lambda: served.admission.in_flight)
        return served

    async def _ensure_loaded(self, ref: str) -> str:
        """The full ref of a loaded model: from the models folder, else fetched from the
        package store (verified like an upload) when this node is part of a fleet."""
        reg = self.registry
        try:
            full = reg.resolve_ref(ref)
        except UnknownStationError as exc:
            try:
                wanted = ModelRef.parse(ref)
            except ValueError:
                raise NotFoundError(exc.message, hint="name the version: NAME:VERSION") from exc
            # The trust policy again: the files may have changed since they were installed.
            loaded = await asyncio.to_thread(self._load, wanted)
            full = self._serve(*loaded).ref
        task = self._retiring.pop(full, None)
        if task is not None:
            task.cancel()
        return full

    def _load(self, ref: ModelRef) -> tuple[Detector, Verification | None]:
        """From this node's models folder; else, in a fleet, from the package store (so it is
        verified, and signatures checked, wherever it was uploaded); else from the folder it
        was registered from. Signatures are checked against the trust policy every time."""
        s, reg = self.settings, self.registry
        folder = s.models_dir / ref.name / ref.version
        if folder.is_dir():
            return reg.open_verified(folder)
        if self.fleet is not None and deployments.package_sha(self.db, ref.name, ref.version):
            return distribution.fetch(self.fleet, ref, reg.runtime_options(), s.max_pixels,
                                      reg.trust)
        recorded = deployments.model_version_path(self.db, ref.name, ref.version)
        if recorded and Path(recorded).is_dir():
            return reg.open_verified(Path(recorded))
        raise NotFoundError(f"model {ref} is not installed",
                            hint="upload it first with POST /v1/models")

    # -- station changes -------------------------------------------------------------------

    async def deploy(self, station: str, ref: str, mode: str, by: str) -> StationState:
        """Make `ref` the station's active or shadow model: in the desired state, and here at
        once when this node serves the station (other nodes follow by reconciling)."""
        async with self._lock:
            before = self.needed()
            full = await self._target(station, ref)
            old_active, old_shadow = await self._current(station)
            if mode == "shadow":
                if full == old_active:
                    raise ConflictError(f"{full} is already active at {station}",
                                        hint="shadow-deploy a different version")
                await self._write(station, by, {"shadow": ModelRef.parse(full)}, old_active)
                self._set_shadow(station, full)
            else:
                await self._activate(station, by, full, old_active, old_shadow)
            self._retire(before)
            return await self.state(station)

    async def promote(self, station: str, by: str) -> StationState:
        """Make the station's shadow model (in the desired state) its active one."""
        async with self._lock:
            shadow = await self._desired(station, "shadow")
            if shadow is None:
                raise ConflictError(f"station {station} has no shadow model to promote",
                                    hint="deploy one with PUT /v1/stations/{station}/model "
                                         'and {"mode": "shadow"}')
            before = self.needed()
            full = await self._target(station, shadow)
            old_active, _ = await self._current(station)
            await self._write(station, by, {"active": ModelRef.parse(full), "shadow": None},
                              old_active)
            self._switch(station, full, old_active, clear_shadow=True)
            self._retire(before)
            return await self.state(station)

    async def rollback(self, station: str, by: str) -> StationState:
        """Return the station to the model that was active before the current one (from the
        deployment history, so any node can roll back any station)."""
        async with self._lock:
            target = await asyncio.to_thread(deployments.previous_active, self.db, station)
            if target is None:
                raise ConflictError(f"station {station} has no previous model to roll back to",
                                    hint="deploy a version explicitly with PUT .../model")
            before = self.needed()
            full = await self._target(station, str(target))
            old_active, old_shadow = await self._current(station)
            await self._activate(station, by, full, old_active, old_shadow)
            self._retire(before)
            return await self.state(station)

    async def _activate(
        self, station: str, by: str, full: str, old_active: str | None, old_shadow: str | None
    ) -> None:
        """Record `full` as the station's active model (ending its shadow if it was that
        model), then switch the routing."""
        changes: dict[str, ModelRef | None] = {"active": ModelRef.parse(full)}
        if old_shadow == full:
            changes["shadow"] = None
        await self._write(station, by, changes, old_active)
        self._switch(station, full, old_active, clear_shadow=old_shadow == full)

    async def stop_shadow(self, station: str, by: str) -> StationState:
        """Stop the station's shadow model (its results stay for reports)."""
        async with self._lock:
            active, shadow = await self._current(station)
            if shadow is None:
                raise ConflictError(f"station {station} has no shadow model")
            before = self.needed()
            await self._write(station, by, {"shadow": None}, active)
            self.registry.shadows.pop(station, None)
            self._retire(before)
            return await self.state(station)

    async def converge(self, station: str, mode: str, ref: str | None) -> str | None:
        """Run what the desired state says at a station this node serves, without writing
        the desired state (the reconciler's step); returns what runs now. A model that cannot
        be loaded raises and leaves the station on the model it had."""
        async with self._lock:
            before = self.needed()
            if mode == "shadow":
                full = await self._ensure_loaded(ref) if ref else None
                if full is None:
                    self.registry.shadows.pop(station, None)
                else:
                    self.registry.shadows[station] = full
            elif ref is not None:
                full = await self._ensure_loaded(ref)
                shadow = self.registry.shadows.get(station)
                self._switch(station, full, self.active_ref(station),
                             clear_shadow=shadow == full)
            self._retire(before)
            return self.registry.shadows.get(station) if mode == "shadow" \
                else self.active_ref(station)

    async def _target(self, station: str, ref: str) -> str:
        """The full ref to deploy: loaded here when this node serves the station, else only
        checked against the recorded versions (the serving nodes fetch it)."""
        if self.settings.serves(station):
            return await self._ensure_loaded(ref)
        return await asyncio.to_thread(self._registered, ref)

    def _registered(self, ref: str) -> str:
        name, _, version = ref.partition(":")
        known = deployments.registered_versions(self.db, name)
        matches = [str(r) for r in known if not version or r.version == version]
        if len(matches) != 1:
            raise NotFoundError(f"model {ref} is not registered" if not matches else
                                f"model {ref} has several versions ({', '.join(matches)})",
                                hint="upload it with POST /v1/models and name NAME:VERSION")
        return matches[0]

    async def _desired(self, station: str, mode: str) -> str | None:
        ref = await asyncio.to_thread(deployments.desired, self.db, station, mode)
        return str(ref) if ref else None

    async def _current(self, station: str) -> tuple[str | None, str | None]:
        """(active, shadow) now: what runs here for a served station, else the desired state
        (the active model the serving nodes report when none was deployed: their settings')."""
        if self.settings.serves(station):
            return self.active_ref(station), self.registry.shadows.get(station)
        active = await self._desired(station, "active")
        if active is None:
            reported = await asyncio.to_thread(nodes.running_models, self.db, station, "active")
            active = reported[0] if len(reported) == 1 else None
        return active, await self._desired(station, "shadow")

    def _set_shadow(self, station: str, full: str) -> None:
        if self.settings.serves(station):
            self.registry.shadows[station] = full

    async def _write(self, station: str, by: str, changes: dict[str, ModelRef | None],
                     old: str | None) -> None:
        """Record the changes; `old` is the active model before them (kept in the history
        when it came from settings, so a rollback can return to it)."""
        try:
            await asyncio.to_thread(deployments.apply, self.db, station, by, changes,
                                    ModelRef.parse(old) if old else None)
        except SQLAlchemyError as exc:
            log.error("could not record a deployment change at %s: %s", station, exc)
            raise ServiceUnavailableError(
                "the database is unavailable: nothing was changed",
                hint="retry when /readyz reports the database ok") from exc
        if self.on_change is not None:
            self.on_change()

    def _switch(self, station: str, new: str, old: str | None, *, clear_shadow: bool) -> None:
        """Flip the mapping in one event-loop step: new requests go to `new` from here on
        (nothing to flip at a station another node serves)."""
        if not self.settings.serves(station):
            return
        reg = self.registry
        reg.stations[station] = new
        if clear_shadow:
            reg.shadows.pop(station, None)
        if old is not None and old != new:
            self.previous[station] = old
        log.info("station %s: active %s (was %s)", station, new, old)

    # -- unloading -------------------------------------------------------------------------

    def needed(self) -> set[str]:
        """Models something still routes to or may return to."""
        reg = self.registry
        keep = {*reg.stations.values(), *reg.shadows.values(), *self.previous.values()}
        if reg.implicit_ref:
            keep.add(reg.implicit_ref)
        if self.settings.default_model:
            with contextlib.suppress(UnknownStationError):
                keep.add(reg.resolve_ref(self.settings.default_model))
        return keep

    def _retire(self, needed_before: set[str]) -> None:
        """Unload, once idle, what was needed before a change and is not any more."""
        for ref in needed_before - self.needed():
            if ref in self.registry.models and ref not in self._retiring:
                self._retiring[ref] = asyncio.get_running_loop().create_task(
                    self._unload_when_idle(ref), name=f"retire-{ref}")

    async def _unload_when_idle(self, ref: str) -> None:
        try:
            while ref not in self.needed():
                served = self.registry.models.get(ref)
                if served is None:
                    return
                if served.admission.in_flight == 0 and served.batcher.depth == 0:
                    await self.registry.unload(ref)
                    self.metrics.forget_queue(ref)
                    return
                await asyncio.sleep(0.05)
        finally:
            if self._retiring.get(ref) is asyncio.current_task():
                del self._retiring[ref]

    async def stop(self) -> None:
        """Cancel pending unloads (the registry stops every model at shutdown)."""
        for task in list(self._retiring.values()):
            task.cancel()
        for task in list(self._retiring.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
