"""The run records: LDAP sync runs and job runs, from started to finished (or interrupted,
or abandoned by a process that died), the last high-water mark, the guarded run an
operator may approve. The run service (bridge.jobs.runner), the sync (bridge.ldap.sync),
the sync lock (bridge.ldap.lock), the leader lease and the retention write these rows
only through here; the status page, the API and the metrics read them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.store.db import Store, rowcount
from bridge.store.models import JobOutcome, JobRun, RunMode, RunStatus, SyncRun

if TYPE_CHECKING:
    from bridge.ldap.plan import SyncResult

#: how many entry errors a run keeps in its detail
MAX_ERRORS_KEPT = 100


class RunInterrupted(Exception):
    """The process is stopping: the run ends at its next safe point, recorded as interrupted."""


#: runs whose scan completed: their high-water mark is safe to continue from
COMPLETE = (RunStatus.ok, RunStatus.approved, RunStatus.guarded)
#: runs that did what they were asked: a source is healthy from the latest of these on
SUCCEEDED = (RunStatus.ok, RunStatus.approved)
#: runs that did not: a source is failing since the first of these after its latest success
FAILED = (RunStatus.failed, RunStatus.interrupted, RunStatus.guarded)


def start_run(store: Store, source: str, mode: str, dry_run: bool, now: datetime | None = None) -> int:
    with store.write() as session:
        run = SyncRun(source=source, mode=mode, dry_run=dry_run, status=RunStatus.running,
                      started_at=now or utcnow())
        session.add(run)
        session.flush()
        return run.id


def set_mode(store: Store, run_id: int, mode: str) -> None:
    """An incremental run that had to scan in full (its mark is from another DC)."""
    with store.write() as session:
        run = session.get(SyncRun, run_id)
        if run is not None:
            run.mode = mode


def finish_run(store: Store, result: SyncResult, detail: dict[str, Any], now: datetime | None = None) -> bool:
    """Record how the run ended; False (nothing written) when it was no longer running:
    the run service marked it interrupted at shutdown while it was still at work."""
    c = result.counts
    with store.write() as session:
        run = session.get(SyncRun, result.run_id, with_for_update=True)  # against interrupt_sync
        if run is None or run.status != RunStatus.running:
            return False
        run.status, run.finished_at = result.status, now or utcnow()
        run.added, run.updated, run.deactivated = c.added, c.updated, c.deactivated + c.deleted
        run.unchanged, run.errors = c.unchanged, c.errors
        run.high_water_mark = None if result.dry_run else result.high_water_mark
        run.detail = {
            "counts": c.as_dict(),
            **({"error": result.error} if result.error else {}),
            **({"errors": result.errors[:MAX_ERRORS_KEPT]} if result.errors else {}),
            **detail,
        }
    return True


def close_abandoned(store: Store, source: str, now: datetime) -> int:
    """Close the runs of ``source`` left ``running`` by a process that died. Called by
    the holder of the source's sync lock: while it holds it, nobody else syncs."""
    with store.write() as session:
        closed = 0
        for run in session.scalars(select(SyncRun).where(SyncRun.source == source,
                                                         SyncRun.status == RunStatus.running).with_for_update()):
            run.status, run.finished_at = RunStatus.failed, now
            run.detail = {**(run.detail or {}), "error": "abandoned: the process running it ended"}
            closed += 1
        return closed


def interrupt_sync(store: Store, run_id: int, why: str, now: datetime) -> bool:
    """Mark a run still at work as interrupted (the process is stopping and cannot wait
    for it): what its committed batches did stays, its mark is not used."""
    with store.write() as session:
        run = session.get(SyncRun, run_id, with_for_update=True)  # against finish_run
        if run is None or run.status != RunStatus.running:
            return False
        run.status, run.finished_at = RunStatus.interrupted, now
        run.detail = {**(run.detail or {}), "error": why}
        return True


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
                                     SyncRun.status.in_(SUCCEEDED),
                                     SyncRun.id > run.id).limit(1))
    return None if later is not None else run


def mark_approved(store: Store, guarded_id: int, approving_id: int) -> None:
    with store.write() as session:
        run = session.get(SyncRun, guarded_id, with_for_update=True)
        if run is not None:
            run.detail = {**(run.detail or {}), "approved_by": approving_id}


# -- job runs --------------------------------------------------------------------------


def start_job(store: Store, job: str, replica: str, now: datetime) -> int:
    with store.write() as session:
        run = JobRun(job=job, replica=replica, started_at=now, outcome=JobOutcome.running)
        session.add(run)
        session.flush()
        return run.id


def finish_job(store: Store, run_id: int, outcome: str, counts: dict[str, Any], message: str | None,
               now: datetime) -> bool:
    """Record how the job ended; False when it was no longer running (marked interrupted)."""
    with store.write() as session:
        return rowcount(session.execute(
            update(JobRun).where(JobRun.id == run_id, JobRun.outcome == JobOutcome.running)
            .values(outcome=outcome, counts=counts, message=message, finished_at=now))) == 1


def interrupt_job(store: Store, run_id: int, why: str, now: datetime) -> bool:
    return finish_job(store, run_id, JobOutcome.interrupted, {}, why, now)


def job_run(store: Store, run_id: int) -> JobRun | None:
    with store.read() as session:
        run = session.get(JobRun, run_id)
        if run is not None:
            session.expunge(run)
        return run


def purge_job_runs(session: Session, before: datetime) -> int:
    """Job runs started before ``before`` (frequent jobs add hundreds a day), in the
    retention's transaction (``Services.purge_history``)."""
    return rowcount(session.execute(delete(JobRun).where(JobRun.started_at < before)))


def purge_sync_runs(session: Session, before: datetime) -> int:
    """Sync runs started before ``before``, but never the ones a sync or the status page
    still reads: the latest complete run of each source and mode (its high-water mark, its
    DirSync cookie), the latest completed one of each source (its last success) and the
    latest guarded one (a plan waiting for approval)."""
    real = SyncRun.dry_run.is_(False)
    keep = (select(func.max(SyncRun.id)).where(real, SyncRun.status.in_(COMPLETE)).group_by(SyncRun.source,
                                                                                               SyncRun.mode),
            select(func.max(SyncRun.id)).where(real, SyncRun.status.in_(SUCCEEDED))
            .group_by(SyncRun.source),
            select(func.max(SyncRun.id)).where(real, SyncRun.status == RunStatus.guarded).group_by(SyncRun.source))
    kept = {row for query in keep for row in session.scalars(query) if row is not None}
    return rowcount(session.execute(delete(SyncRun).where(
        SyncRun.started_at < before, SyncRun.status != RunStatus.running, SyncRun.id.not_in(kept))))


def close_abandoned_jobs(store: Store, replica: str, now: datetime) -> int:
    """Close the job runs left ``running`` by ``replica``, a leader that died: called by
    the replica taking the leader lease over from it (bridge.jobs.leader)."""
    with store.write() as session:
        return rowcount(session.execute(
            update(JobRun).where(JobRun.replica == replica, JobRun.outcome == JobOutcome.running)
            .values(outcome=JobOutcome.failed, finished_at=now,
                    message="abandoned: the process running it ended")))


# -- health ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceHealth:
    """Where a source stands now, from its real runs (whoever started them: the scheduler,
    the API, the CLI; dry runs do not count): healthy since its last completed run, or
    failing since the first run that failed after it."""

    source: str
    state: Literal["healthy", "failing", "never"]
    last_success: datetime | None
    failing_since: datetime | None = None
    failed_runs: int = 0
    latest_failure: int | None = None  # the run to look at
    latest_status: str | None = None
    reason: str | None = None


def source_health(session: Session, source: str) -> SourceHealth:
    real = (SyncRun.source == source, SyncRun.dry_run.is_(False), SyncRun.finished_at.is_not(None))
    last_ok = session.execute(
        select(SyncRun.id, SyncRun.finished_at)
        .where(*real, SyncRun.status.in_(SUCCEEDED))
        .order_by(SyncRun.id.desc()).limit(1)).first()
    failed = (*real, SyncRun.status.in_(FAILED),
              SyncRun.id > (last_ok.id if last_ok else 0))
    # aggregates, and the latest failure alone: a source failing for weeks (a guarded plan of
    # thousands each hour) must not make every refresh of the page read them all
    count, since, latest_id = session.execute(
        select(func.count(), func.min(SyncRun.started_at), func.max(SyncRun.id)).where(*failed)).one()
    last_success = last_ok.finished_at if last_ok else None
    if not count:
        return SourceHealth(source, "healthy" if last_ok else "never", last_success)
    status, guard, error = session.execute(
        select(SyncRun.status, SyncRun.detail["guard"].as_string(), SyncRun.detail["error"].as_string())
        .where(SyncRun.id == latest_id)).one()
    reason = guard if status == RunStatus.guarded else error
    return SourceHealth(source, "failing", last_success, since, count, latest_id, status, reason)
