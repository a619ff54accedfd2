"""API-key authentication (`Authorization: Bearer <key>`) and role checks.

Roles: camera (post frames), reviewer (read records, review), admin (everything, including
models and deployments). Verified keys are cached briefly so the hot path of a camera posting
frames does not hit the database on every request; a revoked key stops working within
`ttl_s` seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from inspector.server.errors import AuthenticationError, ForbiddenError
from inspector.store import keys
from inspector.store.db import Database


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (recorded as reviewer), role, and for a station-scoped
    camera key the stations it may post for (None = any)."""

    name: str
    role: str
    key_prefix: str | None
    stations: tuple[str, ...] | None = None


ANONYMOUS_ADMIN = Principal(name="anonymous", role="admin", key_prefix=None)


class KeyCache:
    """Verifies bearer keys against the database, caching results for `ttl_s` seconds."""

    def __init__(self, db: Database, ttl_s: float = 10.0) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def peek(self, key: str) -> tuple[bool, Principal | None]:
        """(True, principal) from the cache when fresh, (False, None) when a lookup is needed."""
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return True, hit[1]
        return False, None

    def lookup(self, key: str) -> Principal | None:
        """The principal for a key, or None when it is unknown or revoked (blocking call)."""
        now = time.monotonic()
        found, cached = self.peek(key)
        if found:
            return cached
        info = keys.verify_key(self.db, key)
        principal = Principal(info.name, info.role, info.prefix, info.stations) if info else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now, principal)
        return principal


def bearer_token(header: str | None) -> str:
    """The key from an Authorization header, or AuthenticationError saying how to send it."""
    if not header:
        raise AuthenticationError(
            "missing API key", hint="send `Authorization: Bearer <key>`; create a key with "
            "`inspector keys create --role camera`",
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("malformed Authorization header",
                                  hint="use the form `Authorization: Bearer <key>`")
    return token.strip()


def check_station(principal: Principal, station: str | None) -> Principal:
    """Pass through unless a station-scoped key posts for a station outside its list."""
    if principal.stations is None or station is None or station in principal.stations:
        return principal
    raise ForbiddenError(
        f"key {principal.key_prefix} ({principal.name}) may post only for station(s) "
        f"{', '.join(principal.stations)}, not {station}",
        hint="post with a key made for this station: `inspector keys create --role camera "
             f"--station {station}`",
    )


def check_role(principal: Principal, allowed: tuple[str, ...]) -> Principal:
    """Pass through when the principal's role is allowed; ForbiddenError otherwise."""
    if principal.role not in allowed:
        raise ForbiddenError(
            f"a {principal.role} key cannot do this",
            hint=f"use a key with role {' or '.join(allowed)}",
        )
    return principal
