"""Sign in with a reviewer or admin API key, sign out."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from inspector.ui.session import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    UI_ROLES,
    UiSession,
    end_session,
    new_token,
    same_token,
    start_session,
)
from inspector.ui.web import (
    anonymous_session,
    current_session,
    render,
    safe_next,
    services,
    signer,
)

router = APIRouter()


def _cookie_args(request: Request) -> dict[str, object]:
    return {"httponly": True, "samesite": "strict", "path": "/ui",
            "secure": request.url.scheme == "https"}


def _login_page(request: Request, status: int = 200, error: str | None = None,
                next_url: str | None = None) -> HTMLResponse:
    token = new_token()
    response = render(request, "login.html", None, status=status, login_csrf=token, error=error,
                      next_url=safe_next(next_url),
                      auth_enabled=services(request).settings.auth_enabled)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600,
                        **_cookie_args(request))  # type: ignore[arg-type]
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    if current_session(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, next_url=next)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    key: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/ui/",
) -> Response:
    """Check the key's role; a camera key, an unknown key or a missing token is refused."""
    if not same_token(request.cookies.get(LOGIN_CSRF_COOKIE), csrf):
        return _login_page(request, 403, "The sign-in form expired. Please try again.", next)
    settings = services(request).settings
    session: UiSession | None = None
    if not settings.auth_enabled:
        session = anonymous_session()
    else:
        principal = await run_in_threadpool(services(request).keys.lookup, key.strip())
        if principal is None:
            return _login_page(request, 401, "Unknown or revoked key. Check it and try again, "
                               "or ask an admin for a reviewer key.", next)
        if principal.role not in UI_ROLES:
            return _login_page(request, 403, f"A {principal.role} key cannot sign in here: use "
                               "a reviewer or admin key.", next)
        session = UiSession(name=principal.name, role=principal.role,
                            key_prefix=principal.key_prefix, csrf=new_token(),
                            issued_at=int(time.time()))
    max_age_s = settings.session_max_age_h * 3600
    session = await run_in_threadpool(start_session, services(request).db, session, max_age_s)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, signer(request).dumps(session), max_age=int(max_age_s),
                        **_cookie_args(request))  # type: ignore[arg-type]
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui")
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    """End the session on the server too: a copy of the cookie is refused from now on."""
    session = current_session(request)
    if session is not None:
        if not same_token(session.csrf, csrf):
            return render(request, "error.html", session, status=403,
                          message="This form expired. Reload the page and try again.")
        end_session(services(request).db, session)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response
