"""Transaction-scoped locks on a name, for rules that a unique index cannot hold.

PostgreSQL: a transaction advisory lock in the two-int form (a key space per rule
and a 32-bit hash of the name), released when the transaction ends. SQLite needs
nothing: a write transaction holds the database's write lock from its start.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session


def lock_name(session: Session, space: int, name_key: str) -> None:
    """Serialise, until the transaction ends, every transaction that locks this name in ``space``."""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = int.from_bytes(hashlib.blake2b(name_key.encode(), digest_size=4).digest(), "big", signed=True)
    session.execute(select(func.pg_advisory_xact_lock(space, digest)))
