"""One lease primitive over the ``leader_leases`` table: a named row that one holder owns
until ``expires_at``. The scheduler's leader (bridge.jobs.leader) and the sync lock of
each LDAP source (bridge.ldap.lock) are both built on it, so both take, renew and give
up a lease the same way, on SQLite and PostgreSQL.

Taking is one write transaction: an INSERT that does nothing when the row exists, then
one conditional UPDATE that succeeds only for the holder itself, for anyone once the
lease ran out, or for a holder the caller names as over (``over``). Two takers racing
each other: SQLite serialises write transactions, PostgreSQL's UPDATE re-reads the row
the other committed; either way exactly one holds it afterwards. (On PostgreSQL the
holder may delete the row between the INSERT that found it and the UPDATE: the take then
inserts again.) Renewing names the
holder, so it never brings back a lease that was given up or taken over.

The times are the caller's clock: replicas' clocks must agree to well within a lease.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, case, delete, select, update

from bridge.clock import Clock, utcnow
from bridge.store.db import Store, rowcount
from bridge.store.models import LeaderLease

#: takes of a lease whose row keeps vanishing between the statements before giving up
TRIES = 5


class LeaseContended(RuntimeError):
    """The lease row vanished between the statements of a take, TRIES times over: another
    holder takes and gives it up in a tight loop. The sync lock answers it as SyncBusy."""


@dataclass(frozen=True)
class LeaseState:
    """A lease as stored (its holder may have died: compare ``expires_at`` with now)."""

    holder: str
    acquired_at: datetime
    expires_at: datetime

    def held_by(self, holder: str, now: datetime) -> bool:
        return self.holder == holder and self.expires_at > now


def _table() -> Table:
    return cast(Table, LeaderLease.__table__)


def _insert_if_missing(store: Store, name: str, holder: str, now: datetime, until: datetime) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = sqlite.insert if store.is_sqlite else postgresql.insert
    return insert(LeaderLease).values(name=name, holder=holder, acquired_at=now, expires_at=until) \
        .on_conflict_do_nothing(index_elements=["name"])


def _acquired_at(table: Table, holder: str, now: datetime) -> ColumnElement[Any]:
    """``acquired_at`` stays while the same holder renews, and restarts on a take-over."""
    return case((table.c.holder == holder, table.c.acquired_at),
                else_=bindparam("taken_over_at", now, type_=table.c.acquired_at.type))


class Leases:
    """The lease table of one store, read with one clock."""

    def __init__(self, store: Store, clock: Clock = utcnow):
        self.store = store
        self.clock = clock

    def take(self, name: str, holder: str, seconds: float, *, over: Collection[str] = ()) -> LeaseState:
        """Acquire ``name`` for ``holder`` (or renew it, when it already holds it) for
        ``seconds``; returns the lease as it stands afterwards: held by ``holder`` when
        taken, by the other holder otherwise."""
        now = self.clock()
        until = now + timedelta(seconds=seconds)
        table = _table()
        free = (table.c.holder == holder) | (table.c.expires_at <= now)
        if over:
            free = free | table.c.holder.in_(list(over))
        with self.store.write() as session:
            for _ in range(TRIES):  # the holder may give the row up between our statements: insert again
                session.execute(_insert_if_missing(self.store, name, holder, now, until))
                session.execute(update(table).where(table.c.name == name).where(free)
                                .values(expires_at=until, acquired_at=_acquired_at(table, holder, now),
                                        holder=holder))
                row = session.execute(select(table.c.holder, table.c.acquired_at, table.c.expires_at)
                                      .where(table.c.name == name)).one_or_none()
                if row is not None:
                    return LeaseState(row.holder, row.acquired_at, row.expires_at)
        raise LeaseContended(f"the lease {name} was taken and given up {TRIES} times while {holder} tried")

    def renew(self, name: str, holder: str, seconds: float) -> bool:
        """Extend the lease while ``holder`` holds it; False when it was given up or taken over."""
        with self.store.write() as session:
            return rowcount(session.execute(
                update(LeaderLease).where(LeaderLease.name == name, LeaderLease.holder == holder)
                .values(expires_at=self.clock() + timedelta(seconds=seconds)))) == 1

    def release(self, name: str, holder: str) -> bool:
        """Give the lease up, so the next taker gets it at once; False when ``holder`` no
        longer held it."""
        with self.store.write() as session:
            return rowcount(session.execute(
                delete(LeaderLease).where(LeaderLease.name == name, LeaderLease.holder == holder))) == 1

    def current(self, name: str) -> LeaseState | None:
        with self.store.read() as session:
            row = session.scalar(select(LeaderLease).where(LeaderLease.name == name))
            return LeaseState(row.holder, row.acquired_at, row.expires_at) if row is not None else None
