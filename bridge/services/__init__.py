"""The service layer: the single write path of SCIM, LDAP sync, the admin API, the CLI
and the CSV import, so that every source obeys the same rules."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, configure_mappers

from bridge.clock import Clock, stamp, utcnow
from bridge.config import Config
from bridge.services import audit, conflicts, validate
from bridge.services.actor import Actor
from bridge.services.conflicts import ConflictNote
from bridge.services.errors import ServiceError
from bridge.services.unit import Refusal, UnitOfWork
from bridge.store.db import Store

__all__ = ["Actor", "ServiceError", "Services", "UnitOfWork"]
log = logging.getLogger(__name__)


class Services:
    def __init__(self, store: Store, config: Config, clock: Clock = utcnow):
        self.store = store
        self.config = config
        #: the process's clock (``Runtime.clock`` sets it): every time a service writes
        self.clock = clock
        store.check_flushes(validate.refuse_nul_on_flush)  # every ORM write, of every service
        # The mappers set up before the first write: a create makes its object from the row it
        # inserted (make_transient_to_detached), which needs them, and its statements are Core.
        configure_mappers()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A write transaction of the services' own bookkeeping, on the services' clock."""
        with self.store.write() as session:
            stamp(session, self.clock)
            yield session

    @contextmanager
    def unit(self, actor: Actor) -> Iterator[UnitOfWork]:
        """A write transaction for ``actor``; any error rolls back everything in it. What the
        unit refused (bridge.services.errors.Forbidden) is audited afterwards, in a
        transaction of its own, so the refusal is kept though the change is not."""
        refusals: list[Refusal] = []
        conflicts: list[ConflictNote] = []
        try:
            with self.store.write() as session:
                uow = UnitOfWork(session, actor, self.config.ownership, self.config, self.clock)
                uow.refusals, uow.conflicts = refusals, conflicts
                yield uow
                uow.access.settle()  # the access-type rules follow what the unit changed
        finally:
            if refusals:
                self._audit_refusals(actor, refusals)
            if conflicts:
                self.record_conflicts(actor, conflicts)

    def resolve_conflicts(self, actor: Actor, kind: str, source: str, subjects: list[str]) -> None:
        """Close ``source``'s open conflicts about ``subjects``: the write went through."""
        try:
            with self._write() as session:
                conflicts.resolve(session, actor, kind, source, subjects)
        except SQLAlchemyError as exc:
            log.warning("could not resolve conflicts: %s", type(exc).__name__)

    @contextmanager
    def read(self, actor: Actor) -> Iterator[UnitOfWork]:
        """The services over a read transaction, for answers that change nothing: no write
        lock (SQLite's BEGIN IMMEDIATE), nothing committed (a write made by mistake is lost
        with the transaction, never kept)."""
        with self.store.read() as session:
            yield UnitOfWork(session, actor, self.config.ownership, self.config, self.clock)

    def close_conflict(self, actor: Actor, conflict_id: int) -> bool:
        """Close an open conflict settled by hand; False when no such conflict is open."""
        with self._write() as session:
            return conflicts.close(session, actor, conflict_id, now=self.clock())

    def purge_history(self, before: datetime) -> dict[str, int]:
        """What the retention allows to go, in one transaction: audit events, conflicts
        resolved, job runs and sync runs (but those a sync still reads) before ``before``."""
        from bridge.services import runs

        with self._write() as session:
            return {"deleted": audit.purge(session, before),
                    "conflicts_purged": conflicts.purge(session, before),
                    "job_runs_purged": runs.purge_job_runs(session, before),
                    "sync_runs_purged": runs.purge_sync_runs(session, before)}

    def record_conflicts(self, actor: Actor, notes: list[ConflictNote]) -> None:
        """Open or count conflicts (bridge.services.conflicts) in a transaction of their own."""
        try:
            with self._write() as session:
                conflicts.record(session, actor, notes)
        except SQLAlchemyError as exc:  # the store is gone, or a replica recorded the same one just now
            log.warning("could not record %d conflict(s): %s", len(notes), type(exc).__name__)

    def _audit_refusals(self, actor: Actor, refusals: list[Refusal]) -> None:
        try:
            with self._write() as session:
                for refusal in refusals:
                    audit.record(session, actor, "refused", refusal.target_type, refusal.target_id,
                                 refusal.target_name, {"refused": [refusal.what, refusal.reason]})
        except SQLAlchemyError as exc:  # the store is gone: the refusal itself still stands
            log.warning("could not audit %d refused change(s): %s", len(refusals), type(exc).__name__)
