"""Prometheus metrics, in a registry owned by one app (so tests can build several apps)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_MS_BUCKETS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000)
#: Distinct station labels kept on per-station series; later stations share OTHER_STATION.
#: With one model and no station map, any station name is accepted, so without this cap a
#: camera could grow the metrics without bound by inventing names.
MAX_STATION_LABELS = 256
OTHER_STATION = "_other"


@dataclass(frozen=True)
class Totals:
    """Counts since the server started (the heartbeat turns them into rates)."""

    frames: int
    fails: int
    errors: int


class Metrics:
    """Counters and histograms the server updates; `render()` is the /metrics body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.inspections = Counter(
            "inspector_inspections", "Verdicts answered, by station and verdict.",
            ["station", "verdict"], registry=r,
        )
        self.errors = Counter(
            "inspector_http_errors", "Error answers by HTTP status.", ["status"], registry=r
        )
        self.stage_ms = Histogram(
            "inspector_stage_milliseconds",
            "Time per request stage: decode, queue, inference, record, total.",
            ["stage"], buckets=_MS_BUCKETS, registry=r,
        )
        self.batch_size = Histogram(
            "inspector_batch_size", "Frames per inference batch.", ["model"],
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64), registry=r,
        )
        self.queue_depth = Gauge(
            "inspector_queue_depth", "Frames admitted and not yet answered, per model.",
            ["model"], registry=r,
        )
        self.outbox_backlog = Gauge(
            "inspector_outbox_backlog", "Verdicts waiting for delivery, per destination and "
            "state (pending, dead).", ["destination", "state"], registry=r,
        )
        self.artifacts_written = Counter(
            "inspector_artifacts_written", "Inspections whose image and heatmap were stored.",
            registry=r,
        )
        self.inflight_bytes = Gauge(
            "inspector_inflight_bytes", "Bytes reserved by frames in flight (the memory budget "
            "in use), all models together.", registry=r,
        )
        self.inflight_limit = Gauge(
            "inspector_inflight_bytes_limit", "The memory budget for frames in flight.",
            registry=r,
        )
        self._stations: set[str] = set()
        self._frames = self._fails = self._errors = 0

    def count_verdict(self, station: str, verdict: str) -> None:
        """Count one verdict under its station's label (capped: see MAX_STATION_LABELS)."""
        if station not in self._stations:
            if len(self._stations) >= MAX_STATION_LABELS:
                station = OTHER_STATION
            else:
                self._stations.add(station)
        self.inspections.labels(station=station, verdict=verdict).inc()
        self._frames += 1
        self._fails += verdict == "fail"

    def count_error(self, status: int) -> None:
        """Count one error answer."""
        self.errors.labels(status=str(status)).inc()
        self._errors += 1

    def totals(self) -> Totals:
        return Totals(self._frames, self._fails, self._errors)

    def track_budget(self, in_use: Callable[[], int], limit: int) -> None:
        """Report the frames' memory budget (bytes reserved now, and its limit)."""
        self.inflight_bytes.set_function(lambda: float(in_use()))
        self.inflight_limit.set(limit)

    def track_queue(self, model: str, depth: Callable[[], int]) -> None:
        """Report a model's in-flight count at scrape time."""
        self.queue_depth.labels(model=model).set_function(lambda: float(depth()))

    def forget_queue(self, model: str) -> None:
        """Stop reporting an unloaded model's queue."""
        with contextlib.suppress(KeyError):
            self.queue_depth.remove(model)

    def batch_observer(self, model: str) -> Callable[[int, float], None]:
        hist = self.batch_size.labels(model=model)
        return lambda size, _ms: hist.observe(size)

    def set_backlog(self, destination: str, pending: int, dead: int) -> None:
        self.outbox_backlog.labels(destination=destination, state="pending").set(pending)
        self.outbox_backlog.labels(destination=destination, state="dead").set(dead)

    def render(self) -> bytes:
        return generate_latest(self.registry)
