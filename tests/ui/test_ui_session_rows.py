"""Server-side review-page sessions against a real database (SQLite; PostgreSQL when
reachable): a sign-in writes a row, sign-out revokes it, expired rows are refused and swept,
a revoked key still signs its holder out."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from inspector.store import keys
from inspector.store.db import Database
from inspector.store.models import UiSessionRow
from inspector.ui.session import UiSession, end_session, key_still_valid, start_session

MAX_AGE_S = 3600.0


def signed_in(db: Database, role: str = "reviewer") -> tuple[UiSession, str]:
    info, _ = keys.create_key(db, role, "ann")
    unsaved = UiSession(name="ann", role=role, key_prefix=info.prefix, csrf="tok",
                        issued_at=int(time.time()))
    return start_session(db, unsaved, MAX_AGE_S), info.prefix


def row(db: Database, sid: str | None) -> UiSessionRow | None:
    with db.session() as s:
        return s.scalar(select(UiSessionRow).where(UiSessionRow.id == sid))


def test_sign_in_writes_a_row_and_sign_out_revokes_it(db: Database) -> None:
    session, prefix = signed_in(db)
    assert session.sid is not None and len(session.sid) >= 40
    saved = row(db, session.sid)
    assert saved is not None and saved.key_prefix == prefix and saved.revoked_at is None
    assert timedelta(minutes=59) < saved.expires_at - saved.created_at <= timedelta(hours=1)
    assert key_still_valid(db, session)

    end_session(db, session)
    revoked = row(db, session.sid)
    assert revoked is not None and revoked.revoked_at is not None
    assert not key_still_valid(db, session)


def test_refused_without_a_valid_row(db: Database) -> None:
    session, _ = signed_in(db)
    old_style = UiSession(name=session.name, role=session.role, key_prefix=session.key_prefix,
                          csrf=session.csrf, issued_at=session.issued_at)  # no sid
    assert not key_still_valid(db, old_style)
    unknown = UiSession(**{**old_style.__dict__, "sid": "no-such-session"})
    assert not key_still_valid(db, unknown)
    other_key, _ = signed_in(db)  # a row made for another key does not fit this session
    swapped = UiSession(**{**session.__dict__, "sid": other_key.sid})
    assert not key_still_valid(db, swapped)
    assert key_still_valid(db, session)


def test_expired_rows_are_refused_and_swept_at_sign_in(db: Database) -> None:
    old, _ = signed_in(db)
    with db.session() as s:
        s.execute(update(UiSessionRow).where(UiSessionRow.id == old.sid)
                  .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert not key_still_valid(db, old)
    assert row(db, old.sid) is not None
    fresh, _ = signed_in(db)
    assert row(db, old.sid) is None  # swept
    assert row(db, fresh.sid) is not None and key_still_valid(db, fresh)


def test_revoked_key_or_changed_role_ends_the_session(db: Database) -> None:
    session, prefix = signed_in(db)
    as_admin = UiSession(**{**session.__dict__, "role": "admin"})
    assert not key_still_valid(db, as_admin)
    assert keys.revoke_key(db, prefix)
    assert not key_still_valid(db, session)


def test_auth_off_sessions_have_rows_too(db: Database) -> None:
    anonymous = start_session(db, UiSession(name="anonymous", role="admin", key_prefix=None,
                                            csrf="tok", issued_at=int(time.time())), MAX_AGE_S)
    assert key_still_valid(db, anonymous)
    end_session(db, anonymous)
    assert not key_still_valid(db, anonymous)
