"""API keys: `insp_<prefix>_<secret>`; only the SHA-256 of the whole key is stored.

The keys are 160 random bits, so a fast hash is enough (no password-style stretching needed);
lookup is by the public prefix, comparison in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from sqlalchemy import select

from inspector.core.names import NAME_PATTERN, NAME_RE, utcnow
from inspector.store.db import Database
from inspector.store.models import ApiKey

Role = Literal["camera", "reviewer", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
KEY_PREFIX = "insp"


@dataclass(frozen=True)
class KeyInfo:
    """A key's public facts (never the secret)."""

    id: int
    prefix: str
    role: str
    name: str
    revoked: bool
    #: Stations a camera key may post for; None = any station.
    stations: tuple[str, ...] | None = None


#: Width of the `api_keys.stations` column.
_STATIONS_MAX_CHARS = 1024


def normalise_stations(stations: Iterable[str] | None) -> tuple[str, ...] | None:
    """Station names for a scoped key, checked and de-duplicated (order kept); None or an
    empty list = unscoped. ValueError says which name is wrong."""
    if stations is None:
        return None
    out: list[str] = []
    for name in stations:
        if not NAME_RE.match(name):
            raise ValueError(f"station name {name!r} must match {NAME_PATTERN} (letters, digits, "
                             "'_', '.', '-'; up to 64 characters)")
        if name not in out:
            out.append(name)
    if len(",".join(out)) > _STATIONS_MAX_CHARS:
        raise ValueError(f"too many stations for one key ({len(out)}): the list may take "
                         f"{_STATIONS_MAX_CHARS} characters; use an unscoped key instead")
    return tuple(out) or None


def _stations_of(row: ApiKey) -> tuple[str, ...] | None:
    return tuple(row.stations.split(",")) if row.stations else None


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.prefix, row.role, row.name, row.revoked_at is not None,
                   _stations_of(row))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(db: Database, role: str, name: str = "",
               stations: Iterable[str] | None = None) -> tuple[KeyInfo, str]:
    """Create a key; returns its info and the plaintext key (shown once, never stored).

    `stations` scopes a camera key to those stations (None or empty: any station)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    scope = normalise_stations(stations)
    if scope is not None and role != "camera":
        raise ValueError(f"only camera keys can be limited to stations, not {role} keys: "
                         "leave out --station")
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(20)}"
    with db.session() as s:
        row = ApiKey(prefix=prefix, key_hash=hash_key(key), role=role,
                     name=(name or f"{role}-{prefix}")[:64], created_at=utcnow(),
                     stations=",".join(scope) if scope else None)
        s.add(row)
        s.flush()
        info = _info(row)
    return info, key


def verify_key(db: Database, key: str) -> KeyInfo | None:
    """The key's info when it exists and is not revoked; None otherwise."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    with db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.key_hash, hash_key(key)):
            return None
        return _info(row)


def list_keys(db: Database) -> list[KeyInfo]:
    with db.session() as s:
        rows = s.scalars(select(ApiKey).order_by(ApiKey.id))
        return [_info(r) for r in rows]


def revoke_key(db: Database, prefix: str) -> bool:
    """Revoke by public prefix; False when no such key."""
    with db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if row is None:
            return False
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return True
