"""One leader among the replicas: a lease row in the shared database.

Every replica tries to acquire or renew the lease every ``lease_seconds / 3``
with one write transaction: an INSERT that does nothing when the row exists,
then one conditional UPDATE that succeeds only for the holder or when the lease
has run out. It works the same on SQLite and PostgreSQL. The holder runs the
scheduled jobs; the others keep trying, and take over within ``lease_seconds``
after the leader stops renewing (crash, kill, network). A leader that cannot
renew stops counting itself leader a safety margin before the lease runs out,
so two replicas never both think they lead. A graceful stop gives the lease up.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.exc import SQLAlchemyError

from bridge.accounts.clock import Clock
from bridge.store.db import Store, rowcount
from bridge.store.models import LeaderLease, utcnow

if TYPE_CHECKING:
    from bridge.runtime import Runtime

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"


@dataclass(frozen=True)
class LeaseState:
    holder: str
    acquired_at: datetime
    expires_at: datetime


def _insert_if_missing(store: Store, name: str, holder: str, now: datetime, until: datetime) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = sqlite.insert if store.is_sqlite else postgresql.insert
    return insert(LeaderLease).values(name=name, holder=holder, acquired_at=now, expires_at=until) \
        .on_conflict_do_nothing(index_elements=["name"])


def current_leader(store: Store, name: str = LEASE_NAME) -> LeaseState | None:
    """The lease as stored (its holder may have died: compare ``expires_at`` with now)."""
    with store.read() as session:
        row = session.scalar(select(LeaderLease).where(LeaderLease.name == name))
        return LeaseState(row.holder, row.acquired_at, row.expires_at) if row is not None else None


class Leadership:
    """This replica's side of the lease."""

    def __init__(self, store: Store, holder: str, lease_seconds: int, *, name: str = LEASE_NAME,
                 clock: Clock = utcnow):
        self.store = store
        self.holder = holder
        self.lease = timedelta(seconds=lease_seconds)
        self.margin = timedelta(seconds=max(1.0, lease_seconds / 6))
        self.name = name
        self.clock = clock
        self._valid_until: datetime | None = None
        self._lock = threading.Lock()

    @property
    def renew_every(self) -> float:
        return max(1.0, self.lease.total_seconds() / 3)

    def try_acquire(self) -> bool:
        """Acquire the lease or renew it; True while this replica holds it."""
        now = self.clock()
        until = now + self.lease
        try:
            with self.store.write() as session:
                session.execute(_insert_if_missing(self.store, self.name, self.holder, now, until))
                table = cast(Table, LeaderLease.__table__)
                result = session.execute(
                    update(table)
                    .where(table.c.name == self.name)
                    .where((table.c.holder == self.holder) | (table.c.expires_at <= now))
                    .values(expires_at=until,
                            acquired_at=_keep_if_holder(table, self.holder, now),
                            holder=self.holder)
                )
                held = rowcount(result) == 1
        except SQLAlchemyError as exc:
            log.warning("leader lease not renewed: %s", type(exc).__name__, extra={"replica": self.holder})
            held = False
        with self._lock:
            was = self.is_leader()
            self._valid_until = until - self.margin if held else None
        if held and not was:
            log.info("this replica leads the scheduled jobs", extra={"replica": self.holder})
        elif was and not held:
            log.warning("this replica lost the leader lease", extra={"replica": self.holder})
        return held

    def is_leader(self) -> bool:
        return self._valid_until is not None and self.clock() < self._valid_until

    def release(self) -> None:
        """Give the lease up (graceful stop), so another replica takes over at once."""
        with self._lock:
            self._valid_until = None
        try:
            with self.store.write() as session:
                session.execute(update(LeaderLease).where(
                    LeaderLease.name == self.name, LeaderLease.holder == self.holder)
                    .values(expires_at=self.clock()))
        except SQLAlchemyError as exc:
            log.warning("leader lease not released: %s", type(exc).__name__)


def _keep_if_holder(table, holder: str, now: datetime):  # type: ignore[no-untyped-def]
    """``acquired_at`` stays while the same holder renews, and restarts on a take-over."""
    from sqlalchemy import bindparam, case

    return case((table.c.holder == holder, table.c.acquired_at),
                else_=bindparam("taken_over_at", now, type_=table.c.acquired_at.type))


def release_leadership(rt: Runtime) -> None:
    """Give up the lease of this runtime's scheduler, if it has one (graceful stop)."""
    if rt.leadership is not None:
        rt.leadership.release()
