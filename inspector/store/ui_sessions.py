"""Server-side rows of review-page sessions (`ui_sessions`): create, revoke, look up.

The cookie format, roles and CSRF live in inspector.ui.session; this module only runs the SQL.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update

from inspector.store.db import Database
from inspector.store.models import ApiKey, UiSessionRow


def create(db: Database, key_prefix: str | None, max_age_s: float) -> str:
    """Write a session row under a new random id and return the id. Rows past their expiry
    are swept on the way (cheap: `expires_at` is indexed)."""
    now = datetime.now(UTC)
    sid = secrets.token_urlsafe(32)
    with db.session() as s:
        s.execute(delete(UiSessionRow).where(UiSessionRow.expires_at < now))
        s.add(UiSessionRow(id=sid, key_prefix=key_prefix, created_at=now,
                           expires_at=now + timedelta(seconds=max_age_s)))
    return sid


def revoke(db: Database, sid: str) -> None:
    """Mark a session row revoked (its cookie is refused from now on)."""
    with db.session() as s:
        s.execute(update(UiSessionRow)
                  .where(UiSessionRow.id == sid, UiSessionRow.revoked_at.is_(None))
                  .values(revoked_at=datetime.now(UTC)))


def row_and_key(db: Database, sid: str) -> tuple[UiSessionRow, ApiKey | None] | None:
    """A session row and the API key of its prefix (None when the key is gone); None when
    there is no such row."""
    query = (select(UiSessionRow, ApiKey)
             .outerjoin(ApiKey, ApiKey.prefix == UiSessionRow.key_prefix)
             .where(UiSessionRow.id == sid))
    with db.session() as s:
        found = s.execute(query).first()
    return None if found is None else (found[0], found[1])
