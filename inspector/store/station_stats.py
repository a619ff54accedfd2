"""Per-station figures for the review pages: counts, yield, overturned fails, and the score
distribution over time (a time x score histogram computed in the database, so a week of
frames costs one GROUP BY, not a million rows in Python)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, case, cast, func, select

from inspector.core.metrics import share
from inspector.store.db import Database
from inspector.store.models import Inspection


@dataclass(frozen=True)
class StationStats:
    """Counts for one station over a period. Reviews count by each part's latest label."""

    station: str
    passed: int = 0
    failed: int = 0
    #: Fails a reviewer has labelled (defect or good), and those labelled good (overturned).
    reviewed_fails: int = 0
    overturned: int = 0
    #: Passes a reviewer labelled defect (escapes found among the sampled passes).
    escapes: int = 0
    #: Passes a reviewer has labelled (defect or good).
    reviewed_passes: int = 0
    last_seen: datetime | None = None

    @property
    def total(self) -> int:
        return self.passed + self.failed

    @property
    def confirmed(self) -> int:
        return self.reviewed_fails - self.overturned

    @property
    def yield_rate(self) -> float | None:
        """First-pass yield: passes / inspections."""
        return self.passed / self.total if self.total else None

    @property
    def overturn_rate(self) -> float | None:
        """Overturned fails / reviewed fails (the share of fails that were good parts); None
        before any fail is reviewed. Not the false-reject rate, whose denominator is goods:
        see `reviewed_false_reject_rate` and `line_rates`."""
        return self.overturned / self.reviewed_fails if self.reviewed_fails else None

    @property
    def reviewed(self) -> int:
        """Frames with a reviewer's label: what the reviewed rates rest on."""
        return self.reviewed_fails + self.reviewed_passes

    @property
    def reviewed_defects(self) -> int:
        return self.confirmed + self.escapes

    @property
    def reviewed_goods(self) -> int:
        return self.overturned + self.reviewed_passes - self.escapes

    @property
    def reviewed_escape_rate(self) -> float | None:
        """Reviewed defects the model passed / reviewed defects."""
        return share(self.escapes, self.reviewed_defects)

    @property
    def reviewed_false_reject_rate(self) -> float | None:
        """Reviewed goods the model failed / reviewed goods."""
        return share(self.overturned, self.reviewed_goods)

    def line_rates(self) -> tuple[float | None, float | None]:
        """(escape rate, false-reject rate) of the whole line, estimated from the reviews.

        Reviewers see fails first and passes only as a sample, so reviewed frames hold too
        many fails: the reviewed FRR reads high, the reviewed escape rate low. Each reviewed
        fail here stands for failed / reviewed_fails fails, each reviewed pass for passed /
        reviewed_passes passes (assuming the reviewed ones are a fair sample of their
        verdict). None until both fails and passes have reviews.
        """
        if not self.reviewed_fails or not self.reviewed_passes:
            return None, None
        per_fail = self.failed / self.reviewed_fails
        per_pass = self.passed / self.reviewed_passes
        caught, false_rejects = self.confirmed * per_fail, self.overturned * per_fail
        escapes = self.escapes * per_pass
        good_passes = (self.reviewed_passes - self.escapes) * per_pass
        return share(escapes, escapes + caught), share(false_rejects, false_rejects + good_passes)


def _period(stmt: Any, since: datetime | None, until: datetime | None) -> Any:
    if since:
        stmt = stmt.where(Inspection.created_at >= since)
    if until:
        stmt = stmt.where(Inspection.created_at < until)
    return stmt


def station_stats(db: Database, since: datetime | None = None, until: datetime | None = None,
                  station: str | None = None) -> list[StationStats]:
    """Figures per station (all stations, or one), by station name."""
    stmt = select(Inspection.station, Inspection.verdict, Inspection.review_state,
                  func.count(), func.max(Inspection.created_at))
    if station:
        stmt = stmt.where(Inspection.station == station)
    stmt = _period(stmt, since, until).group_by(
        Inspection.station, Inspection.verdict, Inspection.review_state)
    acc: dict[str, dict[str, Any]] = {}
    with db.session() as s:
        for name, verdict, state, n, last in s.execute(stmt):
            a = acc.setdefault(name, {"passed": 0, "failed": 0, "reviewed_fails": 0,
                                      "overturned": 0, "escapes": 0, "reviewed_passes": 0,
                                      "last_seen": None})
            if isinstance(last, str):  # aggregates bypass the column type on SQLite
                last = datetime.fromisoformat(last).replace(tzinfo=UTC)
            a["last_seen"] = max(filter(None, (a["last_seen"], last)), default=None)
            if verdict == "pass":
                a["passed"] += n
                a["escapes"] += n if state == "defect" else 0
                a["reviewed_passes"] += n if state != "unreviewed" else 0
            else:
                a["failed"] += n
                a["reviewed_fails"] += n if state != "unreviewed" else 0
                a["overturned"] += n if state == "good" else 0
    return [StationStats(station=k, **v) for k, v in sorted(acc.items())]


@dataclass(frozen=True)
class ScoreGrid:
    """Scores binned by time (columns) and value (rows), with per-column summaries."""

    start: datetime
    end: datetime
    score_lo: float
    score_hi: float
    time_bins: int
    score_bins: int
    #: (time bin, score bin, count) for every non-empty cell.
    cells: list[tuple[int, int, int]] = field(default_factory=list)
    #: Per time bin: inspections, fails, mean score, threshold in force (max); None if empty.
    counts: list[int] = field(default_factory=list)
    fails: list[int] = field(default_factory=list)
    means: list[float | None] = field(default_factory=list)
    thresholds: list[float | None] = field(default_factory=list)

    @property
    def bin_seconds(self) -> float:
        return (self.end - self.start).total_seconds() / self.time_bins

    def medians(self) -> list[float | None]:
        """Per time bin, the median score, interpolated within its score bin (robust to the
        few defects that pull a mean up: the line to watch for drift)."""
        width = (self.score_hi - self.score_lo) / self.score_bins
        columns: list[list[int]] = [[0] * self.score_bins for _ in range(self.time_bins)]
        for t, b, n in self.cells:
            columns[t][b] += n
        out: list[float | None] = []
        for col in columns:
            half, seen = sum(col) / 2, 0
            if not half:
                out.append(None)
                continue
            for b, n in enumerate(col):
                if n and seen + n >= half:
                    out.append(self.score_lo + (b + (half - seen) / n) * width)
                    break
                seen += n
        return out


def _epoch(dialect: str) -> Any:
    if dialect == "postgresql":
        return func.extract("epoch", Inspection.created_at)
    return (func.julianday(Inspection.created_at) - 2440587.5) * 86400.0


def _bucket(expr: Any, dialect: str) -> Any:
    # CAST truncates on SQLite (values here are >= 0) but rounds on PostgreSQL: floor there.
    return cast(func.floor(expr), Integer) if dialect == "postgresql" else cast(expr, Integer)


def score_grid(db: Database, station: str, since: datetime | None, until: datetime | None,
               time_bins: int = 60, score_bins: int = 24) -> ScoreGrid | None:
    """The station's score distribution over the period; None when it has no inspections."""
    base = _period(select().where(Inspection.station == station), since, until)
    with db.session() as s:
        total, lo_t, hi_t, lo_s, hi_s, lo_thr, hi_thr = s.execute(base.add_columns(
            func.count(), func.min(Inspection.created_at), func.max(Inspection.created_at),
            func.min(Inspection.score), func.max(Inspection.score),
            func.min(Inspection.threshold), func.max(Inspection.threshold))).one()
    if lo_t is None:
        return None
    first, last = (v if isinstance(v, datetime) else datetime.fromisoformat(v)
                   for v in (lo_t, hi_t))
    first, last = (v.replace(tzinfo=UTC) if v.tzinfo is None else v for v in (first, last))
    start = max(since, first) if since else first  # span the data, not the whole period
    # Just past the last frame (it must land in the last column), at least a second wide.
    end = until or last + max((last - start) / 200, timedelta(milliseconds=1))
    end = max(end, start + timedelta(seconds=1))
    lo, hi = min(lo_s, lo_thr), max(hi_s, hi_thr)
    pad = (hi - lo) * 0.05 or max(abs(hi) * 0.1, 0.05)
    lo, hi = lo - pad, hi + pad
    time_bins = min(time_bins, max(12, int(total) // 5))  # a few parts per column, even when few
    dialect = db.backend
    t_width = (end - start).total_seconds() / time_bins
    s_width = (hi - lo) / score_bins
    tb = _bucket((_epoch(dialect) - start.timestamp()) / t_width, dialect).label("tb")
    sb = _bucket((Inspection.score - lo) / s_width, dialect).label("sb")
    fail = func.sum(case((Inspection.verdict == "fail", 1), else_=0))
    with db.session() as s:
        raw_cells = s.execute(base.add_columns(tb, sb, func.count()).group_by(tb, sb))
        cells: dict[tuple[int, int], int] = {}
        for t, b, n in raw_cells:
            key = (min(max(int(t), 0), time_bins - 1), min(max(int(b), 0), score_bins - 1))
            cells[key] = cells.get(key, 0) + int(n)
        cols = s.execute(base.add_columns(
            tb, func.count(), fail, cast(func.avg(Inspection.score), Float),
            func.max(Inspection.threshold)).group_by(tb))
        counts, fails = [0] * time_bins, [0] * time_bins
        sums: list[float] = [0.0] * time_bins
        thresholds: list[float | None] = [None] * time_bins
        for t, n, f, mean, thr in cols:
            i = min(max(int(t), 0), time_bins - 1)
            counts[i] += int(n)
            fails[i] += int(f or 0)
            sums[i] += float(mean) * int(n)
            prev = thresholds[i]
            thresholds[i] = thr if prev is None else max(prev, thr)
    means = [sums[i] / counts[i] if counts[i] else None for i in range(time_bins)]
    return ScoreGrid(start=start, end=end, score_lo=lo, score_hi=hi, time_bins=time_bins,
                     score_bins=score_bins, cells=[(t, b, n) for (t, b), n in cells.items()],
                     counts=counts, fails=fails, means=means, thresholds=thresholds)


def models_seen(db: Database, station: str, since: datetime | None = None,
                until: datetime | None = None) -> list[tuple[str, str, int]]:
    """(model name, version, inspections) that answered the station in the period, most first."""
    stmt = _period(select(Inspection.model_name, Inspection.model_version, func.count())
                   .where(Inspection.station == station), since, until)
    stmt = stmt.group_by(Inspection.model_name, Inspection.model_version)
    with db.session() as s:
        rows = [(m, v, int(n)) for m, v, n in s.execute(stmt)]
    return sorted(rows, key=lambda r: -r[2])
