"""Login throttling: N failures per account or M per client IP within a window lock
for a while; an admin may unlock earlier.

The locks are derived from the recorded attempts (``LoginAttempt``), so that an
unknown user name locks exactly like a real one (the answer must not tell them
apart) and every replica sees the same state. An account's lock is also written
on the user (``locked_until``, ``lock_reason``) for admins to see and lift.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from bridge.config import LockoutPolicy
from bridge.store.models import LoginAttempt

# An attempt whose check is under way: counted as a failure until it is settled, so that
# concurrent guesses cannot all pass the lock check before any of them is recorded.
PENDING = "pending"
# Reasons of attempts that count against the limits: wrong credentials of any kind, a
# check under way, and a check the directory could not answer (else a directory made
# unreachable would turn the lockout off for its users).
FAILURES = frozenset({"bad_password", "unknown_user", "no_password", "bad_totp", PENDING,
                      "directory_unavailable"})
SUCCESS = "ok"
ACCOUNT_RESETS = frozenset({SUCCESS, "unlock"})  # a login or an admin unlock starts the count afresh
IP_UNLOCK = "ip_unlock"
IP_UNLOCK_KEY = "*ip*"  # user_name_key of an IP unlock marker: no user name can be it (no '*' after casefold)
LOCK_REASON = "failures"
MAX_EVENTS = 5000


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: Literal["failure", "reset"]


def lock_end(events: Iterable[Event], max_failures: int, window: timedelta, lock: timedelta) -> datetime | None:
    """When the lock from these events (oldest first) ends, or None if they never locked.

    ``max_failures`` failures within ``window`` lock for ``lock``; attempts during a lock
    are refused before any check and do not count; a reset clears the count and the lock.
    """
    end: datetime | None = None
    recent: deque[datetime] = deque()
    for event in events:
        if event.kind == "reset":
            recent.clear()
            end = None
            continue
        if end is not None and event.at < end:
            continue
        recent.append(event.at)
        while recent and recent[0] <= event.at - window:
            recent.popleft()
        if len(recent) >= max_failures:
            end = event.at + lock
            recent.clear()
    return end


def _events(session: Session, where: list[ColumnElement[bool]], resets: frozenset[str], since: datetime) -> list[Event]:
    rows = session.execute(
        select(LoginAttempt.at, LoginAttempt.reason, LoginAttempt.success)
        .where(*where, LoginAttempt.at > since, LoginAttempt.reason.in_(FAILURES | resets))
        .order_by(LoginAttempt.at.desc(), LoginAttempt.id.desc())
        .limit(MAX_EVENTS)
    ).all()
    return [Event(at, "reset" if reason in resets else "failure") for at, reason, _ in reversed(rows)]


def _lookback(policy: LockoutPolicy, now: datetime) -> datetime:
    return now - timedelta(hours=policy.window_hours + policy.lock_hours)


def account_locked_until(session: Session, policy: LockoutPolicy, name_key: str, now: datetime) -> datetime | None:
    """The end of the lock on this user name (known or not), if it is locked now."""
    events = _events(session, [LoginAttempt.user_name_key == name_key], ACCOUNT_RESETS, _lookback(policy, now))
    end = lock_end(events, policy.max_failures_per_account, timedelta(hours=policy.window_hours),
                   timedelta(hours=policy.lock_hours))
    return end if end is not None and end > now else None


def ip_locked_until(session: Session, policy: LockoutPolicy, client_ip: str | None,
                    now: datetime) -> datetime | None:
    """The end of the lock on this client IP, if it is locked now."""
    if not client_ip:
        return None
    events = _events(session, [LoginAttempt.client_ip == client_ip], frozenset({IP_UNLOCK}),
                     _lookback(policy, now))
    end = lock_end(events, policy.max_failures_per_ip, timedelta(hours=policy.window_hours),
                   timedelta(hours=policy.lock_hours))
    return end if end is not None and end > now else None
