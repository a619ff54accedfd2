"""The station page's drift chart: the score distribution over time as an inline SVG.

Columns are time bins, rows score bins; a cell's opacity grows with the log of its count,
blue below the threshold in force and red at or above it. The median score is a dark line and
the threshold a dashed amber step line, so a distribution creeping towards the threshold
shows at a glance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta

from markupsafe import Markup, escape

from inspector.store.station_stats import ScoreGrid

W, H = 920, 300
LEFT, RIGHT, TOP, BOTTOM = 52, 18, 14, 34


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _fmt_score(v: float) -> str:
    return f"{v:.3g}"


def render_grid(grid: ScoreGrid) -> Markup:
    """The SVG markup (safe to embed) for one station's score grid."""
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    cw, ch = pw / grid.time_bins, ph / grid.score_bins
    span = grid.score_hi - grid.score_lo

    def x(i: float) -> float:
        return LEFT + i * cw

    def y(score: float) -> float:
        return TOP + ph - (score - grid.score_lo) / span * ph

    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
           f'aria-label="Score distribution over time" xmlns="http://www.w3.org/2000/svg">',
           f'<rect class="plot-bg" x="{LEFT}" y="{TOP}" width="{pw:.1f}" height="{ph:.1f}"/>']
    for v in _ticks(grid.score_lo, grid.score_hi):
        out.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + pw}" y1="{y(v):.1f}" '
                   f'y2="{y(v):.1f}"/><text class="tick" x="{LEFT - 6}" y="{y(v) + 4:.1f}" '
                   f'text-anchor="end">{_fmt_score(v)}</text>')
    peak = max((n for *_, n in grid.cells), default=1)
    for t, b, n in grid.cells:
        centre = grid.score_lo + (b + 0.5) * span / grid.score_bins
        thr = grid.thresholds[t]
        cls = "cell-fail" if thr is not None and centre >= thr else "cell-pass"
        alpha = 0.15 + 0.85 * math.log1p(n) / math.log1p(peak)
        out.append(f'<rect class="{cls}" x="{x(t):.1f}" y="{y(centre) - ch / 2:.1f}" '
                   f'width="{cw + 0.3:.1f}" height="{ch + 0.3:.1f}" fill-opacity="{alpha:.2f}">'
                   f'<title>{n} part(s), score ≈ {_fmt_score(centre)}</title></rect>')
    out.append(_step_path(grid.thresholds, x, y, "threshold"))
    medians = [f"{x(i + 0.5):.1f},{y(m):.1f}" for i, m in enumerate(grid.medians())
               if m is not None]
    if len(medians) > 1:
        out.append(f'<polyline class="median" points="{" ".join(medians)}"/>')
    duration = grid.end - grid.start
    fmt = ("%H:%M:%S" if duration < timedelta(hours=1) else "%H:%M" if duration < timedelta(days=2)
           else "%m-%d %H:%M")
    last_label = ""
    for i in range(0, grid.time_bins + 1, max(grid.time_bins // 6, 1)):
        label = (grid.start + timedelta(seconds=i * grid.bin_seconds)).strftime(fmt)
        if label == last_label:
            continue
        last_label = label
        anchor = "start" if i == 0 else "end" if i == grid.time_bins else "middle"
        out.append(f'<line class="axis" x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{TOP + ph}" '
                   f'y2="{TOP + ph + 4}"/><text class="tick" x="{x(i):.1f}" y="{H - 14}" '
                   f'text-anchor="{anchor}">{escape(label)}</text>')
    out.append(f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{pw:.1f}" height="{ph:.1f}"/>')
    out.append("</svg>")
    return Markup("".join(out))


def _step_path(values: list[float | None], x: Callable[[float], float],
               y: Callable[[float], float], cls: str) -> str:
    """A step line through per-bin values, lifting the pen over empty bins."""
    parts: list[str] = []
    pen_down = False
    for i, v in enumerate(values):
        if v is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{x(i):.1f},{y(v):.1f} L{x(i + 1):.1f},{y(v):.1f}")
        pen_down = True
    return f'<path class="{cls}" d="{" ".join(parts)}"/>' if parts else ""
