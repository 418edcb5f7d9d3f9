"""A store too busy to answer now: SQLite's write lock still held by another writer past
its busy timeout ("database is locked"), PostgreSQL's lock timeout, a deadlock or a
serialization failure. Such a request did nothing (its transaction rolled back) and may
simply be sent again, so it is answered 503 with Retry-After, never 500."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError

RETRY_AFTER_SECONDS = 2
#: PostgreSQL SQLSTATEs: lock_not_available, deadlock_detected, serialization_failure
_PG_BUSY = frozenset({"55P03", "40P01", "40001"})


def is_busy(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
        return True
    if isinstance(exc, DBAPIError):
        return getattr(exc.orig, "sqlstate", None) in _PG_BUSY
    return False
