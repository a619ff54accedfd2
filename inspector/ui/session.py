"""Signed session cookies, their server-side rows, and CSRF tokens for the review pages.

A session is a small JSON payload (key prefix, name, role, CSRF token, issue time, session id)
signed with HMAC-SHA256 and sent as an HttpOnly, SameSite=Strict cookie. Each sign-in also
writes a `ui_sessions` row under a random id; signing out marks the row revoked, so a copy of
the old cookie stops working at once instead of living on until it expires. The API key
itself never goes into the cookie: each request re-checks the session row and, by prefix, that
the key still exists and is not revoked, so revoking a key signs its holder out too. Forms
carry the session's CSRF token; the sign-in form, which has no session yet, uses a
double-submit cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from inspector.settings import Settings
from inspector.store import ui_sessions
from inspector.store.db import Database

SESSION_COOKIE = "insp_session"
LOGIN_CSRF_COOKIE = "insp_login_csrf"
SECRET_FILE = "session_secret"
UI_ROLES = ("reviewer", "admin")


@dataclass(frozen=True)
class UiSession:
    """Who is signed in to the review pages."""

    name: str
    role: str
    #: Public prefix of the API key used to sign in (None when auth is off).
    key_prefix: str | None
    csrf: str
    issued_at: int
    #: Id of the session's `ui_sessions` row (None only in cookies made before rows existed,
    #: which are refused).
    sid: str | None = None


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Turns sessions into signed cookie values and back, refusing tampered or old ones."""

    def __init__(self, secret: bytes, max_age_s: float) -> None:
        self._key = hashlib.sha256(b"inspector-ui-session\x00" + secret).digest()
        self.max_age_s = max_age_s

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def dumps(self, session: UiSession) -> str:
        payload = _b64(json.dumps(asdict(session), separators=(",", ":")).encode("utf-8"))
        return f"{payload}.{self._sign(payload)}"

    def loads(self, value: str | None, now: float | None = None) -> UiSession | None:
        """The session in a cookie value; None when missing, forged, malformed or expired."""
        if not value or value.count(".") != 1:
            return None
        payload, signature = value.split(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            session = UiSession(**json.loads(_unb64(payload)))
        except (ValueError, TypeError):
            return None
        age = (time.time() if now is None else now) - session.issued_at
        return session if 0 <= age <= self.max_age_s else None


def load_secret(settings: Settings) -> bytes:
    """`session_secret` from settings, else the one kept in the data folder (made once)."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value().encode("utf-8")
    path = settings.data_dir / SECRET_FILE
    return _read_or_create(path)


def _read_or_create(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_hex(32) + "\n")
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < 32:
        raise RuntimeError(f"{path} holds a session secret shorter than 32 characters; "
                           "delete the file to have a new one generated")
    return secret.encode("ascii")


def start_session(db: Database, session: UiSession, max_age_s: float) -> UiSession:
    """Record a sign-in: a `ui_sessions` row under a new random id, returned in the session."""
    sid = ui_sessions.create(db, session.key_prefix, max_age_s)
    return UiSession(name=session.name, role=session.role, key_prefix=session.key_prefix,
                     csrf=session.csrf, issued_at=session.issued_at, sid=sid)


def end_session(db: Database, session: UiSession) -> None:
    """Sign-out: mark the session's row revoked (the cookie is refused from now on)."""
    if session.sid is not None:
        ui_sessions.revoke(db, session.sid)


def key_still_valid(db: Database, session: UiSession) -> bool:
    """True while the session's row exists, is neither revoked nor expired, and (when it was
    made with a key) that API key exists, is not revoked and keeps the same review role."""
    if session.sid is None:
        return False
    found = ui_sessions.row_and_key(db, session.sid)
    if found is None:
        return False
    row, key = found
    if (row.revoked_at is not None or row.expires_at <= datetime.now(UTC)
            or row.key_prefix != session.key_prefix):
        return False
    if session.key_prefix is None:  # signed in while auth was off
        return True
    return (key is not None and key.revoked_at is None and key.role in UI_ROLES
            and key.role == session.role)


def same_token(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of CSRF tokens; False when either is missing."""
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
