"""Database engine, sessions and migrations (run programmatically, shipped in the package).

SQLite runs in WAL mode with `synchronous=FULL`, so a committed verdict survives a power cut,
not just a crash. PostgreSQL is reached through psycopg 3; concurrent nodes starting at once
serialize their migrations on an advisory lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: Arbitrary constant: the PostgreSQL advisory lock id guarding migrations.
_MIGRATION_LOCK_ID = 0x1D5EC7
#: Seconds to wait for a PostgreSQL connection to open: an unreachable host (packets dropped,
#: not refused) fails /readyz and requests in this time instead of the OS's minutes.
CONNECT_TIMEOUT_S = 5
#: Seconds a request waits for a free pooled connection before answering 503.
POOL_TIMEOUT_S = 10


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for a SQLite or PostgreSQL URL; creates the SQLite folder if needed."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A URL's own connect_timeout (query string) wins over the default.
    connect_args = ({} if "connect_timeout" in parsed.query
                    else {"connect_timeout": CONNECT_TIMEOUT_S})
    return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True,
                         pool_timeout=POOL_TIMEOUT_S, connect_args=connect_args)


def alembic_config() -> Config:
    """Alembic configuration pointing at the migrations inside the installed package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision` (idempotent)."""
    cfg = alembic_config()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def schema_is_current(engine: Engine) -> bool:
    """True when the database is at the newest migration."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head


def database_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached (down, restarting, connection
    dropped, pool exhausted), as opposed to a statement the database refused for its data."""
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError)
    return isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError)


class Database:
    """An engine and a session factory; `session()` commits on success, rolls back on error."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        migrate(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions() as session, session.begin():
            yield session

    def ping(self) -> bool:
        """True when a trivial query succeeds."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            log.warning("database ping failed: %s: %s", type(exc).__name__,
                        reason[0] if reason else "")
            return False

    def dispose(self) -> None:
        self.engine.dispose()
