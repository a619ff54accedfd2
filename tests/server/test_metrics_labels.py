"""Per-station metric series are capped: invented station names cannot grow /metrics forever."""

from __future__ import annotations

import re

from inspector.server.metrics import MAX_STATION_LABELS, OTHER_STATION, Metrics


def _station_series(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'inspector_inspections_total\{station="([^"]+)",verdict="pass"\} (\S+)',
                     line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def test_station_labels_are_capped_and_the_rest_is_counted_as_other() -> None:
    metrics = Metrics()
    extra = 40
    for i in range(MAX_STATION_LABELS + extra):
        metrics.count_verdict(f"st{i}", "pass")
    metrics.count_verdict("st0", "pass")  # a known station keeps its own series
    series = _station_series(metrics.render().decode())
    assert len(series) == MAX_STATION_LABELS + 1
    assert series[OTHER_STATION] == extra
    assert series["st0"] == 2
    assert sum(series.values()) == MAX_STATION_LABELS + extra + 1


def test_budget_gauges_read_the_budget_at_scrape_time() -> None:
    metrics = Metrics()
    in_use = [0]
    metrics.track_budget(lambda: in_use[0], 1024)
    in_use[0] = 300
    text = metrics.render().decode()
    assert "inspector_inflight_bytes 300.0" in text
    assert "inspector_inflight_bytes_limit 1024.0" in text
