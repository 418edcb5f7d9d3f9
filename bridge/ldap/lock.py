"""Never two syncs of one source at once, across threads, processes and replicas.

The lock is a lease row (``leader_leases``, name ``ldap-sync:SOURCE``) taken in a
write transaction: SQLite serialises write transactions (``BEGIN IMMEDIATE``),
PostgreSQL locks the row (``FOR UPDATE``) or refuses the second insert by the
primary key. A lease expires, so a process that died mid-sync blocks nobody for
long; a running sync renews it after every batch.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from bridge.store.db import Store
from bridge.store.models import LeaderLease, SyncRun, utcnow

LEASE_SECONDS = 300
RENEW_EVERY_SECONDS = 30


class SyncBusy(Exception):
    """Another sync of this source holds the lock."""


@dataclass
class Lease:
    store: Store
    name: str
    holder: str
    renewed_at: float = 0.0

    def renew(self, force: bool = False) -> None:
        import time

        now = time.monotonic()
        if not force and now - self.renewed_at < RENEW_EVERY_SECONDS:
            return
        with self.store.write() as session:
            session.execute(update(LeaderLease).where(LeaderLease.name == self.name,
                                                      LeaderLease.holder == self.holder)
                            .values(expires_at=utcnow() + timedelta(seconds=LEASE_SECONDS)))
        self.renewed_at = now


def lease_name(source_name: str) -> str:
    return f"ldap-sync:{source_name}"


@contextmanager
def source_lock(store: Store, source_name: str, replica: str) -> Iterator[Lease]:
    """Hold the sync lock of ``source_name``; raises SyncBusy when another holds it.

    Taking the lock also closes runs left ``running`` by a process that died: while
    we hold the lock, nobody else is running a sync of this source."""
    import time

    name = lease_name(source_name)
    holder = f"{replica}:{secrets.token_hex(4)}"[:128]
    now = utcnow()
    try:
        with store.write() as session:
            row = session.scalar(select(LeaderLease).where(LeaderLease.name == name).with_for_update())
            if row is not None and row.expires_at > now:
                raise SyncBusy(f"a sync of {source_name!r} is running ({row.holder}, since "
                               f"{row.acquired_at:%Y-%m-%d %H:%M:%S} UTC)")
            if row is None:
                session.add(LeaderLease(name=name, holder=holder, acquired_at=now,
                                        expires_at=now + timedelta(seconds=LEASE_SECONDS)))
            else:
                row.holder, row.acquired_at = holder, now
                row.expires_at = now + timedelta(seconds=LEASE_SECONDS)
            session.flush()
            for run in session.scalars(select(SyncRun).where(SyncRun.source == source_name,
                                                             SyncRun.status == "running")):
                run.status, run.finished_at = "failed", now
                run.detail = {**(run.detail or {}), "error": "abandoned: the process running it ended"}
    except IntegrityError:
        raise SyncBusy(f"a sync of {source_name!r} is starting elsewhere") from None
    lease = Lease(store, name, holder, renewed_at=time.monotonic())
    try:
        yield lease
    finally:
        with store.write() as session:
            session.execute(delete(LeaderLease).where(LeaderLease.name == name, LeaderLease.holder == holder))
