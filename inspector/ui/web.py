"""What every review page shares: templates, the signed-in session, filters, redirects."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, get_args
from urllib.parse import quote, urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from inspector.core.names import NAME_RE
from inspector.server.deps import Services, get_services
from inspector.store.reviews import QueueQuery, QueueState, QueueVerdict
from inspector.ui.session import (
    SESSION_COOKIE,
    SessionSigner,
    UiSession,
    key_still_valid,
    load_secret,
    new_token,
)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
_signer_lock = threading.Lock()

#: Period choices of the filter bars: label, and how far back from now.
PERIODS: dict[str, tuple[str, timedelta | None]] = {
    "1h": ("Last hour", timedelta(hours=1)),
    "8h": ("Last 8 hours", timedelta(hours=8)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
    "all": ("All time", None),
}


def fmt_time(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if t else "–"


def fmt_ago(t: datetime | None) -> str:
    if t is None:
        return ""
    s = max((datetime.now(UTC) - t).total_seconds(), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{int(s // size)} {unit} ago"
    return "just now"


def fmt_pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v * 100:.{digits}f}%"


def fmt_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 1.5 * size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


templates.env.filters.update(when=fmt_time, ago=fmt_ago, pct=fmt_pct, duration=fmt_duration)
templates.env.globals["static_version"] = str(int(time.time()))


def signer(request: Request) -> SessionSigner:
    """The app's session signer, made on first use from settings (secret file included)."""
    found: SessionSigner | None = getattr(request.app.state, "ui_signer", None)
    if found is None:
        with _signer_lock:
            found = getattr(request.app.state, "ui_signer", None)
            if found is None:
                settings = get_services(request).settings
                found = SessionSigner(load_secret(settings), settings.session_max_age_h * 3600)
                request.app.state.ui_signer = found
    return found


def current_session(request: Request) -> UiSession | None:
    """The signed-in reviewer, or None (no cookie, bad signature, expired, signed out, key
    revoked). Every review page starts here: it is the one place sessions are checked."""
    session = signer(request).loads(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    svc = get_services(request)
    if session.key_prefix is None and svc.settings.auth_enabled:
        return None  # signed in while auth was off: not once it is back on
    return session if key_still_valid(svc.db, session) else None


class SignInRequired(Exception):
    """No valid session: a page answers with a redirect to sign-in, an image with 401."""

    def __init__(self, redirect: bool) -> None:
        super().__init__("sign-in required")
        self.redirect = redirect


def signin_required(request: Request, exc: Exception) -> Response:
    """The app's handler for SignInRequired (installed by inspector.app.create_app)."""
    if isinstance(exc, SignInRequired) and exc.redirect:
        return login_redirect(request)
    return Response(status_code=401)


def _page_session(request: Request) -> UiSession:
    session = current_session(request)
    if session is None:
        raise SignInRequired(redirect=True)
    return session


def _image_session(request: Request) -> UiSession:
    session = current_session(request)
    if session is None:
        raise SignInRequired(redirect=False)
    return session


#: The signed-in reviewer of a page; without one the page redirects to sign-in.
SessionDep = Annotated[UiSession, Depends(_page_session)]
#: The signed-in reviewer of an image request; without one it answers 401.
ImageSessionDep = Annotated[UiSession, Depends(_image_session)]


def anonymous_session() -> UiSession:
    return UiSession(name="anonymous", role="admin", key_prefix=None, csrf=new_token(),
                     issued_at=int(time.time()))


def services(request: Request) -> Services:
    return get_services(request)


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)


def safe_next(target: str | None) -> str:
    """Only same-site paths under /ui are followed after sign-in (no open redirects)."""
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


def render(request: Request, name: str, session: UiSession | None, status: int = 200,
           **context: Any) -> HTMLResponse:
    context.update(user=session, csrf=session.csrf if session else None, path=request.url.path)
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'")
    return response


def _utc_input(value: str | None) -> datetime | None:
    """A `datetime-local` value (taken as UTC), or None when empty or malformed."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass(frozen=True)
class QueueFilters:
    """The queue's filter bar, parsed leniently from the query string (bad values = default)."""

    station: str | None = None
    verdict: QueueVerdict = "fail"
    state: QueueState = "awaiting"
    period: str = "all"
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> QueueFilters:
        f = cls()
        station = params.get("station") or None
        verdict, state = params.get("verdict"), params.get("state")
        period = params.get("period")
        return replace(
            f,
            station=station if station and NAME_RE.match(station) else None,
            verdict=verdict if verdict in get_args(QueueVerdict) else f.verdict,  # type: ignore[arg-type]
            state=state if state in get_args(QueueState) else f.state,  # type: ignore[arg-type]
            period=period if period in PERIODS else f.period,
            since=_utc_input(params.get("since")),
            until=_utc_input(params.get("until")),
        )

    def query(self) -> QueueQuery:
        since = self.since
        delta = PERIODS[self.period][1]
        if since is None and delta is not None:
            since = datetime.now(UTC) - delta
        return QueueQuery(station=self.station, verdict=self.verdict, state=self.state,
                          since=since, until=self.until)

    def params(self) -> dict[str, str]:
        """Non-default filters as query parameters (what links carry from page to page)."""
        out: dict[str, str] = {}
        defaults = QueueFilters()
        for name in ("station", "verdict", "state", "period"):
            value = getattr(self, name)
            if value and value != getattr(defaults, name):
                out[name] = value
        for name in ("since", "until"):
            t = getattr(self, name)
            if t is not None:
                out[name] = t.strftime("%Y-%m-%dT%H:%M")
        return out

    def qs(self, **extra: object) -> str:
        """`?a=b...` for these filters plus `extra` (None values dropped); '' when empty."""
        items = {**self.params(), **{k: str(v) for k, v in extra.items() if v is not None}}
        return f"?{urlencode(items)}" if items else ""
