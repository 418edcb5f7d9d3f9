"""``--postgres`` for the benches: a throwaway PostgreSQL 15 cluster, the one the tests start
(tests/fixtures/postgres.py), with an empty database for the run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tests.fixtures.postgres import running_postgres

__all__ = ["postgres_database", "running_postgres"]


@contextmanager
def postgres_database() -> Iterator[str]:
    """The SQLAlchemy URL of an empty database on a cluster that lives as long as the block."""
    with running_postgres() as server:
        yield server.create_database(f"bench_{uuid.uuid4().hex[:12]}")
