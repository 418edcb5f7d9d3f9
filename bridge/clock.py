"""The one clock of a process: ``Runtime.clock`` is ``utcnow`` unless a test sets its own,
and every component that reads the time is handed it (the services, the leases, the
accounts code, the run records). Column defaults fall back to ``utcnow`` for rows written
without a time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Clock = Callable[[], datetime]

#: where a write transaction carries the clock of the services that opened it
_SESSION_KEY = "dirbridge.clock"


def utcnow() -> datetime:
    return datetime.now(UTC)


def stamp(session: Any, clock: Clock) -> None:
    """Let the writes of ``session`` (an audit event, a conflict) read ``clock``."""
    session.info[_SESSION_KEY] = clock


def now_in(session: Any) -> datetime:
    """The time by the clock ``session`` was stamped with (the wall clock otherwise)."""
    clock: Clock = session.info.get(_SESSION_KEY, utcnow)
    return clock()
