"""Records (SQLAlchemy: SQLite by default, PostgreSQL by URL), artifact files and the outbox."""

from inspector.store.artifacts import ArtifactStore
from inspector.store.db import Database

__all__ = ["ArtifactStore", "Database"]
