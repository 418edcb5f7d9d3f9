"""What the status page shows, gathered from the store, the config and the scheduler.

Each panel is read separately, so that a failing one (say, the database went
away) shows as unavailable while the others still render.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from bridge import __version__
from bridge.ldap.jobs import run_of_failure
from bridge.services.conflicts import open_conflicts, open_total
from bridge.services.runs import FAILED
from bridge.store import migrate
from bridge.store.models import AuditEvent, JobOutcome, JobRun, RunMode, RunStatus, SourceConflict, SyncRun
from bridge.web.chart import RunPoint, sync_chart
from bridge.web.scim_activity import ClientActivity, client_activity

if TYPE_CHECKING:
    from bridge.runtime import Runtime

log = logging.getLogger(__name__)

CHART_RUNS = 20
AUDIT_EVENTS = 15
FAILED_ITEMS = 10
FAILED_WINDOW = timedelta(days=7)
CONFLICTS_SHOWN = 50


@dataclass(frozen=True)
class RunView:
    id: int
    mode: str
    status: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None
    seconds: float | None
    added: int
    updated: int
    deactivated: int
    errors: int
    error: str | None


@dataclass(frozen=True)
class GuardView:
    run_id: int
    started_at: datetime
    reason: str
    would_deactivate: int
    would_delete_groups: int


@dataclass
class SourceView:
    name: str
    last_full: RunView | None = None
    last_incremental: RunView | None = None
    next_full: datetime | None = None
    next_incremental: datetime | None = None
    guard: GuardView | None = None
    chart: Markup = field(default_factory=lambda: Markup(""))


@dataclass(frozen=True)
class JobView:
    name: str
    description: str
    schedule: str
    next_run: datetime | None
    last: JobRun | None


@dataclass(frozen=True)
class HealthItem:
    """One line of "what is wrong now": a source, a client, a job or the database, healthy
    or not, with the plain reason and the next step (a command, a link)."""

    kind: str  # ldap | scim | job
    name: str
    ok: bool
    headline: str
    since: datetime | None = None
    reason: str | None = None
    next_step: str | None = None
    link: str | None = None  # a page of this site (the run)


@dataclass(frozen=True)
class LeaderView:
    holder: str
    acquired_at: datetime
    expires_at: datetime
    alive: bool
    is_me: bool


@dataclass
class StatusView:
    version: str
    uptime: str
    replica: str
    database: dict[str, Any]
    sources: list[SourceView] = field(default_factory=list)
    scim: list[ClientActivity] = field(default_factory=list)
    jobs: list[JobView] = field(default_factory=list)
    scheduler_running: bool = False
    leader: LeaderView | None = None
    audit: list[AuditEvent] = field(default_factory=list)
    failed_jobs: list[JobRun] = field(default_factory=list)
    failed_syncs: list[RunView] = field(default_factory=list)
    conflicts: list[SourceConflict] = field(default_factory=list)  # open conflicts between sources, newest first
    conflicts_open: int = 0  # all of them, when more than are shown
    health: list[HealthItem] = field(default_factory=list)  # every source and client, and failing jobs
    unavailable: list[str] = field(default_factory=list)  # panels that could not be read


def uptime(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


def run_view(run: SyncRun) -> RunView:
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    detail = run.detail or {}
    return RunView(run.id, run.mode, run.status, run.dry_run, run.started_at, run.finished_at, seconds,
                   run.added, run.updated, run.deactivated, run.errors,
                   str(detail["error"]) if detail.get("error") else None)


def guard_view(run: SyncRun) -> GuardView:
    detail = run.detail or {}
    return GuardView(run.id, run.started_at, str(detail.get("guard", "")),
                     len(detail.get("would_deactivate") or []), len(detail.get("would_delete_groups") or []))


def _next_run(rt: Runtime, job_id: str) -> datetime | None:
    if rt.scheduler is None:
        return None
    job = rt.scheduler.get_job(job_id)
    return getattr(job, "next_run_time", None) if job is not None else None


def _database(rt: Runtime) -> dict[str, Any]:
    database: dict[str, Any] = {"backend": rt.store.engine.dialect.name, "state": "ok", "revision": None,
                                "head": migrate.head_revision()}
    try:
        database["revision"] = migrate.current_revision(rt.store.engine)
    except SQLAlchemyError as exc:
        database["state"] = f"unreachable ({type(exc).__name__})"
        return database
    if database["revision"] != database["head"]:
        database["state"] = "migrations pending"
    return database


def _sources(rt: Runtime) -> list[SourceView]:
    from bridge.services.runs import latest_guarded

    out = []
    for source in rt.config.ldap.sources:
        view = SourceView(source.name, next_full=_next_run(rt, f"ldap-full:{source.name}"),
                          next_incremental=_next_run(rt, f"ldap-incremental:{source.name}"))
        with rt.store.read() as session:
            recent = list(session.scalars(
                select(SyncRun).where(SyncRun.source == source.name, SyncRun.dry_run.is_(False))
                .order_by(SyncRun.id.desc()).limit(CHART_RUNS)))
            for mode in RunMode:
                last = session.scalar(select(SyncRun).where(SyncRun.source == source.name, SyncRun.mode == mode,
                                                            SyncRun.dry_run.is_(False))
                                      .order_by(SyncRun.id.desc()).limit(1))
                if last is not None:
                    setattr(view, f"last_{mode}", run_view(last))
        guarded = latest_guarded(rt.store, source.name)
        view.guard = guard_view(guarded) if guarded is not None else None
        points = [RunPoint(r.id, r.mode, r.status, r.started_at,
                           (r.finished_at - r.started_at).total_seconds() if r.finished_at else None,
                           r.added, r.updated, r.deactivated, r.errors) for r in reversed(recent)]
        view.chart = sync_chart(source.name, points)
        out.append(view)
    return out


def _jobs(rt: Runtime) -> list[JobView]:
    from bridge.jobs.registry import job_specs

    with rt.store.read() as session:
        views = []
        for spec in job_specs(rt):
            last = session.scalar(select(JobRun).where(JobRun.job == spec.name)
                                  .order_by(JobRun.id.desc()).limit(1))
            views.append(JobView(spec.name, spec.description, spec.schedule, _next_run(rt, spec.name), last))
            if last is not None:
                session.expunge(last)
    return views


def _leader(rt: Runtime) -> LeaderView | None:
    from bridge.jobs.leader import current_leader

    lease = current_leader(rt.store)
    if lease is None:
        return None
    return LeaderView(lease.holder, lease.acquired_at, lease.expires_at, lease.expires_at > rt.clock(),
                      lease.holder == rt.replica)


def _recent(rt: Runtime, view: StatusView) -> None:
    since = rt.clock() - FAILED_WINDOW
    with rt.store.read() as session:
        view.audit = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(AUDIT_EVENTS)))
        view.failed_jobs = list(session.scalars(
            select(JobRun).where(JobRun.outcome.in_((JobOutcome.failed, JobOutcome.interrupted)),
                                 JobRun.started_at >= since)
            .order_by(JobRun.id.desc()).limit(FAILED_ITEMS)))
        view.failed_syncs = [run_view(r) for r in session.scalars(
            select(SyncRun).where(SyncRun.status.in_(FAILED),
                                  SyncRun.dry_run.is_(False), SyncRun.started_at >= since)
            .order_by(SyncRun.id.desc()).limit(FAILED_ITEMS))]
        listed = {run.id for run in view.failed_syncs}
        view.failed_jobs = [run for run in view.failed_jobs  # a failed sync job's run is listed: shown once
                            if run_of_failure(run.job, run.message) not in listed]
        view.conflicts = open_conflicts(session, limit=CONFLICTS_SHOWN)
        view.conflicts_open = open_total(session)
        session.expunge_all()


#: a SCIM client is failing when at least this share of at least MIN_REQUESTS requests failed in the hour
ERROR_SHARE, MIN_REQUESTS = 0.5, 3


def _health(rt: Runtime, view: StatusView) -> None:
    from bridge.services.runs import source_health

    items: list[HealthItem] = []
    with rt.store.read() as session:
        for source in rt.config.ldap.sources:
            items.append(_source_item(source.name, source_health(session, source.name)))
    for client in view.scim:
        items.append(_client_item(client))
    for job in view.jobs:
        last = job.last
        if last is None or last.outcome not in (JobOutcome.failed, JobOutcome.interrupted):
            continue
        if job.name.startswith("ldap-"):
            continue  # the source's own line says it, once
        items.append(HealthItem("job", job.name, False, f"job {job.name}: {last.outcome}", last.started_at,
                                last.message, f"dirbridge jobs run {job.name} (after fixing the cause)"))
    view.health = items


def _source_item(name: str, health: Any) -> HealthItem:
    from flask import url_for

    if health.state == "never":
        return HealthItem("ldap", name, True, f"LDAP source {name}: not synced yet", None, None,
                          f"dirbridge check-config, then dirbridge sync {name}")
    if health.state == "healthy":
        return HealthItem("ldap", name, True, f"LDAP source {name}: healthy", health.last_success)
    link = url_for("status.run_plan", run_id=health.latest_failure)
    runs = f"{health.failed_runs} run{'s' if health.failed_runs != 1 else ''}"
    if health.latest_status == RunStatus.guarded:
        step = (f"look at the plan; if the removals are real: dirbridge sync {name} --approve-deletions; else fix "
                "users_base, the filters or the bind DN's rights")
        return HealthItem("ldap", name, False, f"LDAP source {name}: stopped by the deletion guard ({runs})",
                          health.failing_since, health.reason, step, link)
    step = f"fix what the reason says, then dirbridge check-config and dirbridge sync {name}"
    return HealthItem("ldap", name, False, f"LDAP source {name}: failing ({runs})", health.failing_since,
                      health.reason, step, link)


def _client_item(client: ClientActivity) -> HealthItem:
    label = f"SCIM client {client.name}" if client.name else "SCIM requests without a valid token"
    failing = (client.requests_last_hour >= MIN_REQUESTS
               and client.errors_last_hour >= ERROR_SHARE * client.requests_last_hour)
    if not client.name and client.requests_last_hour:
        return HealthItem("scim", "", False, f"{label}: {client.requests_last_hour} in the last hour",
                          client.last_request, "an IdP sends a wrong or revoked token (401)",
                          "compare the IdP's token with dirbridge token list; dirbridge token rotate NAME "
                          "gives a new one")
    if failing:
        return HealthItem("scim", client.name, False,
                          f"{label}: {client.errors_last_hour} of {client.requests_last_hour} requests failed "
                          "in the last hour", client.last_request, None,
                          "the IdP's provisioning log shows each answer; dirbridge audit --source scim:"
                          f"{client.name} --action refused shows what was refused")
    idle = "no request yet" if client.last_request is None else "healthy"
    return HealthItem("scim", client.name, True, f"{label}: {idle}", client.last_request)


def gather(rt: Runtime) -> StatusView:
    """Everything the page shows; a panel whose reading fails is named in ``unavailable``."""
    view = StatusView(version=__version__, uptime=uptime(rt.uptime_seconds()),
                      replica=rt.replica, database=_database(rt), scheduler_running=rt.scheduler is not None)
    panels: tuple[tuple[str, Callable[[], None]], ...] = (
              ("LDAP sources", lambda: setattr(view, "sources", _sources(rt))),
              ("SCIM clients", lambda: setattr(view, "scim", client_activity(rt))),
              ("jobs", lambda: setattr(view, "jobs", _jobs(rt))),
              ("leader", lambda: setattr(view, "leader", _leader(rt))),
              ("recent events", lambda: _recent(rt, view)),
              ("health", lambda: _health(rt, view)))
    for name, read in panels:
        try:
            read()
        except SQLAlchemyError as exc:
            log.warning("status page: cannot read %s (%s)", name, type(exc).__name__)
            view.unavailable.append(name)
    return view


def sync_run(rt: Runtime, run_id: int) -> tuple[RunView, dict[str, Any], str] | None:
    """One sync run with its detail (the guard's plan) and its source, or None."""
    with rt.store.read() as session:
        run = session.get(SyncRun, run_id)
        if run is None:
            return None
        return run_view(run), dict(run.detail or {}), run.source
