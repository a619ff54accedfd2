"""API keys: `insp_<prefix>_<secret>`; only the SHA-256 of the whole key is stored.

The keys are 160 random bits, so a fast hash is enough (no password-style stretching needed);
lookup is by the public prefix, comparison in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal, get_args

from sqlalchemy import select

from inspector.store.db import Database
from inspector.store.models import ApiKey, utcnow

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


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(db: Database, role: str, name: str = "") -> tuple[KeyInfo, str]:
    """Create a key; returns its info and the plaintext key (shown once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(20)}"
    with db.session() as s:
        row = ApiKey(prefix=prefix, key_hash=hash_key(key), role=role,
                     name=(name or f"{role}-{prefix}")[:64], created_at=utcnow())
        s.add(row)
        s.flush()
        info = KeyInfo(row.id, prefix, role, row.name, False)
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
        return KeyInfo(row.id, row.prefix, row.role, row.name, False)


def list_keys(db: Database) -> list[KeyInfo]:
    with db.session() as s:
        rows = s.scalars(select(ApiKey).order_by(ApiKey.id))
        return [KeyInfo(r.id, r.prefix, r.role, r.name, r.revoked_at is not None) for r in rows]


def revoke_key(db: Database, prefix: str) -> bool:
    """Revoke by public prefix; False when no such key."""
    with db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if row is None:
            return False
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return True
