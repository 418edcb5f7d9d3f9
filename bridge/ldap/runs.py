"""Sync runs in the store: started, finished, the last high-water mark, the run an
operator may approve. The status page and metrics read these rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bridge.ldap.plan import MAX_ERRORS_KEPT, SyncResult
from bridge.store.db import Store
from bridge.store.models import RunMode, RunStatus, SyncRun, utcnow

#: runs whose scan completed: their high-water mark is safe to continue from
COMPLETE = (RunStatus.ok, RunStatus.approved, RunStatus.guarded)


def start_run(store: Store, source: str, mode: str, dry_run: bool) -> int:
    with store.write() as session:
        run = SyncRun(source=source, mode=mode, dry_run=dry_run, status=RunStatus.running)
        session.add(run)
        session.flush()
        return run.id


def finish_run(store: Store, result: SyncResult, detail: dict[str, Any]) -> None:
    c = result.counts
    with store.write() as session:
        run = session.get(SyncRun, result.run_id)
        assert run is not None
        run.status, run.finished_at = result.status, utcnow()
        run.added, run.updated, run.deactivated = c.added, c.updated, c.deactivated + c.deleted
        run.unchanged, run.errors = c.unchanged, c.errors
        run.high_water_mark = None if result.dry_run else result.high_water_mark
        run.detail = {
            "counts": c.as_dict(),
            **({"error": result.error} if result.error else {}),
            **({"errors": result.errors[:MAX_ERRORS_KEPT]} if result.errors else {}),
            **detail,
        }


def last_mark(store: Store, source: str) -> str | None:
    """The high-water mark of the latest complete, real run of ``source``."""
    with store.read() as session:
        return session.scalar(
            select(SyncRun.high_water_mark)
            .where(SyncRun.source == source, SyncRun.dry_run.is_(False), SyncRun.status.in_(COMPLETE),
                   SyncRun.high_water_mark.is_not(None))
            .order_by(SyncRun.id.desc()).limit(1))


def latest_guarded(store: Store, source: str) -> SyncRun | None:
    """The latest run stopped by the guard and not yet approved, unless a later full
    run completed without the guard (the situation it reported is gone)."""
    with store.read() as session:
        run = session.scalar(
            select(SyncRun).where(SyncRun.source == source, SyncRun.dry_run.is_(False),
                                  SyncRun.status == RunStatus.guarded)
            .order_by(SyncRun.id.desc()).limit(1))
        if run is None or (run.detail or {}).get("approved_by"):
            return None
        later = session.scalar(
            select(SyncRun.id).where(SyncRun.source == source, SyncRun.dry_run.is_(False),
                                     SyncRun.mode == RunMode.full,
                                     SyncRun.status.in_((RunStatus.ok, RunStatus.approved)),
                                     SyncRun.id > run.id).limit(1))
    return None if later is not None else run


def mark_approved(store: Store, guarded_id: int, approving_id: int) -> None:
    with store.write() as session:
        run = session.get(SyncRun, guarded_id)
        if run is not None:
            run.detail = {**(run.detail or {}), "approved_by": approving_id}
