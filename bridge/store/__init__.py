"""The store: SQLAlchemy models, engine and sessions, Alembic migrations."""

from bridge.store.db import Store

__all__ = ["Store"]
