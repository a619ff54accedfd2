"""Station pages: every station's figures, and one station's figures with the drift chart."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from inspector.core.names import NAME_RE
from inspector.store import station_stats
from inspector.ui.chart import render_grid
from inspector.ui.web import PERIODS, SessionDep, render, services

router = APIRouter()
DEFAULT_PERIOD = "7d"


def _since(period: str) -> tuple[str, datetime | None]:
    period = period if period in PERIODS else DEFAULT_PERIOD
    delta = PERIODS[period][1]
    return period, (datetime.now(UTC) - delta if delta else None)


@router.get("/stations", response_class=HTMLResponse)
def stations(request: Request, session: SessionDep, period: str = DEFAULT_PERIOD) -> Response:
    period, since = _since(period)
    rows = station_stats.station_stats(services(request).db, since=since)
    return render(request, "stations.html", session, rows=rows, period=period, periods=PERIODS)


@router.get("/stations/{station}", response_class=HTMLResponse)
def station(
    request: Request, session: SessionDep, station: str, period: str = DEFAULT_PERIOD
) -> Response:
    if not NAME_RE.match(station):
        return render(request, "error.html", session, status=404,
                      message="Station names use letters, digits, '.', '_' and '-'.")
    period, since = _since(period)
    db = services(request).db
    found = station_stats.station_stats(db, since=since, station=station)
    stats = found[0] if found else station_stats.StationStats(station=station)
    grid = station_stats.score_grid(db, station, since, None)
    return render(request, "station.html", session, stats=stats, period=period,
                  periods=PERIODS, chart=render_grid(grid) if grid else None, grid=grid,
                  models=station_stats.models_seen(db, station, since))
