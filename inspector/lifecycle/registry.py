"""The models this server serves and which one answers each station.

Packages are found under the models folder (`<name>/<version>/`, `<name>/` or the folder
itself). Each is fully verified (its signature against the trust policy, then card, checksum,
I/O contract, a test run); an invalid one is refused with one clear log line and the rest
serve. Stations map to models by, in order: the
current deployment in the database, the `stations` setting, `default_model`, and finally the
only loaded model when there is exactly one (that one keeps answering when more are uploaded).
A station may also have a shadow model (`shadows`), which judges the same frames on the side.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from inspector.core.errors import InspectorError, ModelPackageError
from inspector.core.images import DecodeLimits
from inspector.core.names import ModelRef
from inspector.core.package import CARD_FILE as _CARD
from inspector.core.package import read_package_files
from inspector.core.pipeline import Detector, Judgement, PreparedFrame
from inspector.core.runtime import (
    ENGINE_CACHE_DIR,
    CorePinner,
    RuntimeOptions,
    ThreadPlan,
    available_cores,
    plan_threads,
    uses_gpu,
)
from inspector.core.signing import TrustPolicy, Verification
from inspector.core.signing_keys import read_trusted
from inspector.lifecycle.batcher import Admission, MicroBatcher
from inspector.lifecycle.errors import UnknownStationError
from inspector.settings import Settings

log = logging.getLogger(__name__)


def discover_packages(models_dir: Path) -> list[Path]:
    """Folders holding a card.json: the folder itself, `<name>/` or `<name>/<version>/`."""
    if not models_dir.is_dir():
        return []
    if (models_dir / _CARD).is_file():
        return [models_dir]
    found: list[Path] = []
    for child in sorted(p for p in models_dir.iterdir() if _visible_dir(p)):
        if (child / _CARD).is_file():
            found.append(child)
            continue
        found.extend(sorted(g for g in child.iterdir()
                            if _visible_dir(g) and (g / _CARD).is_file()))
    return found


def _visible_dir(p: Path) -> bool:
    """Hidden folders (the upload staging area `.uploads/`) are never packages."""
    return p.is_dir() and not p.name.startswith(".")


@dataclass
class ServedModel:
    """A loaded model with its own batcher, inference thread and admission bound."""

    ref: str
    detector: Detector
    batcher: MicroBatcher[PreparedFrame, Judgement]
    admission: Admission
    executor: ThreadPoolExecutor = field(repr=False)
    #: Who signed the package, as checked when it was loaded.
    signature: Verification | None = None


class ModelRegistry:
    """Loaded models by `name:version`, and the station mapping."""

    def __init__(
        self,
        settings: Settings,
        on_batch: Callable[[str], Callable[[int, float], None]] | None = None,
    ) -> None:
        self.settings = settings
        self._on_batch = on_batch
        self.models: dict[str, ServedModel] = {}
        self.refused: dict[str, str] = {}
        self.stations: dict[str, str] = {}
        #: station -> model that judges the same frames without answering (a candidate
        #: compared on live frames before it is made active).
        self.shadows: dict[str, str] = {}
        #: The model that answers any station when none is configured: the only one loaded at
        #: startup (or the first one uploaded into an empty server); uploads never change it.
        self.implicit_ref: str | None = None

    @functools.cached_property
    def threads(self) -> ThreadPlan:
        """Concurrent inference calls per model and threads per call (settings, else a plan
        from the cores this process may use)."""
        s = self.settings
        plan = plan_threads(gpu=uses_gpu(s.providers), workers=s.inference_workers,
                            intra_op_threads=s.intra_op_threads, max_batch=s.max_batch)
        log.info("inference: %d concurrent call(s) per model, %s thread(s) per call, "
                 "batches of up to %d", plan.workers, plan.intra_op_threads or "ORT default",
                 plan.max_batch)
        return plan

    @functools.cached_property
    def decode_limits(self) -> DecodeLimits:
        """What frames every served model accepts (settings max_pixels, max_side,
        strict_decode)."""
        s = self.settings
        return DecodeLimits(max_pixels=s.max_pixels, max_side=s.max_side,
                            strict=s.strict_decode)

    def runtime_options(self) -> RuntimeOptions:
        """How this server runs every model (providers, threads, batch, spinning, and
        TensorRT's engine cache under the data folder)."""
        s = self.settings
        return RuntimeOptions(providers=s.providers,
                              intra_op_threads=self.threads.intra_op_threads,
                              max_batch=self.threads.max_batch, allow_spinning=s.ort_spinning,
                              engine_cache_dir=s.data_dir / ENGINE_CACHE_DIR,
                              trt_fp16=s.trt_fp16)

    @functools.cached_property
    def trust(self) -> TrustPolicy:
        """Which signatures this server accepts (settings trusted_keys, require_signed)."""
        s = self.settings
        return TrustPolicy(read_trusted(s.trusted_keys), s.require_signed)

    def open_verified(self, path: Path) -> tuple[Detector, Verification]:
        """Check the package's signature against the trust policy, then verify and load it
        (blocking). Raises InspectorError (ModelPackageError) for a refused package."""
        files = read_package_files(path)  # the signature is checked on what gets loaded
        signature = self.trust.check(path, files)
        if signature.status == "untrusted":
            log.warning("%s (served: require_signed is off)", signature.message)
        detector = Detector.load(path, self.runtime_options(), limits=self.decode_limits,
                                 files=files)
        return detector, signature

    def load_package(self, path: Path) -> ServedModel:
        """Verify and load one package (blocking). The caller starts its batcher on the event
        loop (`served.batcher.start()`) before routing stations to it. Raises InspectorError
        (ModelPackageError) for an invalid package or a name:version already loaded."""
        return self.adopt(*self.open_verified(path))

    def adopt(self, detector: Detector, signature: Verification | None = None) -> ServedModel:
        """Serve an already verified detector (an upload validated in staging, with its
        checked signature); same contract as `load_package`."""
        if detector.limits != self.decode_limits:  # uploads are staged with max_pixels only
            detector = detector.with_limits(self.decode_limits)
        ref = detector.card.ref
        path = detector.package.root
        if ref in self.models:
            raise ModelPackageError(
                f"{path}: {ref} is already loaded from {self.models[ref].detector.package.root}",
                hint="give the new package another version",
            )
        served = self._serve(ref, detector)
        served.signature = signature
        if not self.models and not self.settings.stations and self.implicit_ref is None:
            self.implicit_ref = ref
        self.models[ref] = served
        log.info("serving %s from %s on %s (%s)", ref, path, detector.model.provider,
                 detector.model.provider_reason)
        return served

    async def unload(self, ref: str) -> None:
        """Stop serving a model. Call only when it is idle and nothing routes to it."""
        served = self.models.pop(ref, None)
        if served is None:
            return
        await served.batcher.stop()
        served.executor.shutdown(wait=False)
        served.detector.model.close()
        log.info("unloaded %s", ref)

    def load_all(self) -> None:
        """Load every package under the models folder; refuse invalid ones with a log line."""
        s = self.settings
        packages = discover_packages(s.models_dir)
        if not packages:
            log.error("no model packages found under %s: every inspection will answer 404; "
                      "put packages in models/<name>/<version>/", s.models_dir)
        for path in packages:
            try:
                self.load_package(path)
            except InspectorError as exc:
                self.refused[str(path)] = str(exc)
                log.error("refusing model package %s: %s", path, exc)
        self.stations = {st: self.resolve_ref(r) for st, r in s.stations.items()
                         if self._try_resolve(st, r)}
        only = len(self.models) == 1 and not s.stations
        self.implicit_ref = next(iter(self.models)) if only else None

    def _serve(self, ref: str, detector: Detector) -> ServedModel:
        s = self.settings
        plan = self.threads
        workers = plan.workers
        pin = (s.pin_inference_threads and plan.intra_op_threads == 1
               and detector.model.provider == "CPUExecutionProvider"
               and workers == available_cores())
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"infer-{ref}",
                                      initializer=CorePinner() if pin else None)
        batcher: MicroBatcher[PreparedFrame, Judgement] = MicroBatcher(
            f"batcher-{ref}", detector.infer, executor, concurrency=workers,
            max_batch=plan.max_batch, max_delay_ms=s.max_delay_ms,
            on_batch=self._on_batch(ref) if self._on_batch else None,
        )
        return ServedModel(ref, detector, batcher, Admission(ref, s.queue_size), executor)

    def _try_resolve(self, station: str, ref: str) -> bool:
        try:
            self.resolve_ref(ref)
            return True
        except UnknownStationError as exc:
            log.error("station %s: %s", station, exc.message)
            return False

    def resolve_ref(self, ref: str) -> str:
        """`name:version`, or `name` when exactly one version of it is loaded."""
        if ref in self.models:
            return ref
        matches = [r for r in self.models if ModelRef.name_of(r) == ref]
        if len(matches) == 1:
            return matches[0]
        raise UnknownStationError(
            f"model {ref!r} is not loaded" + (f" (versions: {matches})" if matches else ""),
            hint=f"loaded models: {', '.join(sorted(self.models)) or 'none'}",
        )

    def deploy(self, station: str, ref: str) -> str:
        """Point a station at a loaded model (the caller records it); returns the full ref."""
        full = self.resolve_ref(ref)
        self.stations[station] = full
        return full

    def for_station(self, station: str) -> ServedModel:
        """The model that answers `station`, or UnknownStationError saying how to configure it."""
        ref = self.stations.get(station)
        if ref is None and self.settings.default_model:
            ref = self.resolve_ref(self.settings.default_model)
        if ref is None and not self.settings.stations:
            ref = self.implicit_ref
        if ref is None or ref not in self.models:
            known = ", ".join(sorted(self.stations)) or "none"
            raise UnknownStationError(
                f"unknown station {station!r}: no model is assigned to it",
                hint=f"use one of the configured stations ({known}) or map it in "
                     "INSPECTOR_STATIONS / default_model",
            )
        return self.models[ref]

    def start(self) -> None:
        for m in self.models.values():
            m.batcher.start()

    async def stop(self) -> None:
        for m in self.models.values():
            await m.batcher.stop()
            m.executor.shutdown(wait=True)
