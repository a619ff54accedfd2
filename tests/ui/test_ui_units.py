"""Review-page pieces without a server: session signing, the secret file, filters, defect
type names, the drift chart."""

from __future__ import annotations

import os
import re
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from inspector.settings import Settings
from inspector.store.station_stats import ScoreGrid
from inspector.ui.chart import render_grid
from inspector.ui.review_pages import normalise_defect_type, score_gauge
from inspector.ui.session import SessionSigner, UiSession, load_secret, same_token
from inspector.ui.web import QueueFilters, safe_next


def session(issued_at: int | None = None) -> UiSession:
    return UiSession(name="ann", role="reviewer", key_prefix="abcd1234", csrf="tok",
                     issued_at=int(time.time()) if issued_at is None else issued_at)


def test_signed_session_round_trip_and_refusals() -> None:
    signer = SessionSigner(b"x" * 32, max_age_s=3600)
    value = signer.dumps(session())
    assert signer.loads(value) == session(signer.loads(value).issued_at)  # type: ignore[union-attr]
    payload, sig = value.split(".")
    assert signer.loads(payload + "." + sig[::-1]) is None
    assert signer.loads(payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + sig) is None
    assert SessionSigner(b"y" * 32, 3600).loads(value) is None  # another secret
    old = signer.dumps(session(int(time.time()) - 7200))
    assert signer.loads(old) is None
    for junk in (None, "", "a.b.c", "nodot", "!!.??"):
        assert signer.loads(junk) is None


def test_secret_generated_once_and_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = load_secret(settings)
    assert len(first) >= 32 and load_secret(settings) == first
    mode = stat.S_IMODE(os.stat(tmp_path / "data" / "session_secret").st_mode)
    assert mode == 0o600
    given = Settings(data_dir=tmp_path, session_secret="s" * 40)
    assert load_secret(given) == b"s" * 40
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(session_secret="short")


def test_csrf_comparison() -> None:
    assert same_token("abc", "abc")
    assert not same_token("abc", "abd") and not same_token("abc", "") and not same_token(None, "")


def test_queue_filters_parse_leniently_and_round_trip() -> None:
    f = QueueFilters.parse({"station": "s1", "verdict": "pass", "state": "all", "period": "24h",
                            "since": "2024-05-01T08:00", "until": "garbage"})
    assert (f.station, f.verdict, f.state, f.period) == ("s1", "pass", "all", "24h")
    assert f.since == datetime(2024, 5, 1, 8, tzinfo=UTC) and f.until is None
    assert f.qs(page=2) == ("?station=s1&verdict=pass&state=all&period=24h"
                            "&since=2024-05-01T08%3A00&page=2")
    bad = QueueFilters.parse({"station": "a/b", "verdict": "x", "state": "y", "period": "1y"})
    assert bad == QueueFilters() and bad.qs() == ""
    q = QueueFilters.parse({"period": "1h"}).query()
    assert q.since is not None and datetime.now(UTC) - q.since < timedelta(hours=1, seconds=5)


def test_redirects_stay_on_the_review_pages() -> None:
    assert safe_next("/ui/parts/ab?station=s") == "/ui/parts/ab?station=s"
    for target in (None, "", "https://evil.example", "//evil.example", "/v1/models", "/ui\\x"):
        assert safe_next(target) == "/ui/"


def test_defect_type_names() -> None:
    assert normalise_defect_type("  Scratch Mark ") == "scratch_mark"
    assert normalise_defect_type("") is None and normalise_defect_type("   ") is None
    for bad in ("../etc", "dent!", "-lead", "x" * 65):
        with pytest.raises(ValueError, match="not a usable defect type"):
            normalise_defect_type(bad)
    g = score_gauge(0.9, 0.5)
    assert 0 < g["threshold"] < g["score"] <= 100


def test_drift_chart_svg() -> None:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    grid = ScoreGrid(start=start, end=start + timedelta(hours=4), score_lo=0.0, score_hi=1.0,
                     time_bins=4, score_bins=10, cells=[(0, 2, 5), (1, 3, 9), (3, 7, 1)],
                     counts=[5, 9, 0, 1], fails=[0, 0, 0, 1], means=[0.25, 0.35, None, 0.75],
                     thresholds=[0.5, 0.5, None, 0.6])
    medians = grid.medians()
    assert medians[0] == pytest.approx(0.25) and medians[1] == pytest.approx(0.35)
    assert medians[2] is None
    svg = str(render_grid(grid))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="cell-pass"') == 2 and svg.count('class="cell-fail"') == 1
    path = re.search(r'class="threshold" d="([^"]+)"', svg)
    assert path and path.group(1).count("M") == 2  # the pen lifts over the empty bin
    assert 'class="median"' in svg and "01:00" in svg
