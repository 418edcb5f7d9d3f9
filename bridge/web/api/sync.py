"""/api/v1/sync: the LDAP sources, their sync runs (with the deletion guard's plan),
and starting a sync or approving a guarded one.

A sync started here is recorded first and runs in the process's run service
(bridge.jobs.runner): the request waits up to ``wait`` seconds, then answers 200 with
the finished run or 202 with the run in progress, to be followed at
/api/v1/sync/runs/{id}. The source lock keeps one sync per source at a time, across
replicas and the CLI, so a sync may start on any replica; one still running when the
process stops is interrupted after its current batch and recorded so.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import jsonify
from pydantic import BaseModel, Field
from sqlalchemy import select

from bridge.config import LdapSourceConfig
from bridge.jobs.runner import sync_result
from bridge.ldap.lock import SyncBusy
from bridge.ldap.sync import NothingToApprove, UnknownSource, find_source
from bridge.services.errors import Conflict, NotFound
from bridge.services.runs import latest_guarded
from bridge.store.models import SyncRun
from bridge.web import runtime
from bridge.web.api.background import WaitQuery
from bridge.web.api.common import ErrorBody, Page, PageQuery, make_blueprint, page_of, paged
from bridge.web.api.headers import location, model_headers

bp = make_blueprint("api_sync", __name__, "sync", "LDAP sources and their sync runs")

StatusName = Literal["running", "ok", "failed", "guarded", "approved", "interrupted"]
ModeName = Literal["full", "incremental"]
RUN_LOCATION = "/api/v1/sync/runs/"  # + the run's id: the Location of a 202


class SyncBusyError(Conflict):
    code = "syncBusy"


class NothingToApproveError(Conflict):
    code = "nothingToApprove"


class SyncRunSummary(BaseModel):
    id: int
    source: str
    mode: ModeName
    dry_run: bool
    status: StatusName = Field(description="guarded: stopped by the deletion guard, waiting for approval; "
                                           "interrupted: the process stopped while it ran")
    started_at: datetime
    finished_at: datetime | None
    added: int
    updated: int
    deactivated: int = Field(description="users deactivated or deleted")
    unchanged: int
    errors: int = Field(description="entries the store refused")
    guard: str | None = Field(description="why the deletion guard stopped the run")
    approved_by: int | None = Field(description="the run that applied this guarded run's removals")


class RemovedUser(BaseModel):
    id: str
    user_name: str | None = None
    dn: str | None = None


class RemovedGroup(BaseModel):
    id: str
    name: str | None = None
    dn: str | None = None


class Removed(BaseModel):
    users: list[RemovedUser]
    groups: list[RemovedGroup]


class SyncRunOut(SyncRunSummary):
    counts: dict[str, int] = Field(description="every counter of the run (groups, memberships, scanned...)")
    error: str | None = Field(description="why the run failed")
    entry_errors: list[str] = Field(description="the first entries the store refused, with the reason")
    would_deactivate: list[RemovedUser] = Field(description="guarded: the users the run would remove")
    would_delete_groups: list[RemovedGroup] = Field(description="guarded: the groups the run would remove")
    removed: Removed | None = Field(description="what the run removed (at most 1000 of each)")
    approves_run: int | None = Field(description="the guarded run whose removals this run applied")
    waiting_approval: bool = Field(description="guarded and still actionable: approve with "
                                               "POST /api/v1/sync/sources/{source}/runs?approve_deletions=true")


class SyncAccepted(BaseModel):
    model_config = model_headers(location(RUN_LOCATION, "the sync run"))

    source: str
    run: SyncRunSummary = Field(description="the run in progress")
    message: str


class Schedule(BaseModel):
    full: str | None
    incremental: str | None


class Guard(BaseModel):
    max_percent: float
    max_count: int
    min_entries: int


class SourceOut(BaseModel):
    name: str
    preset: str
    urls: list[str]
    users_base: str
    groups_base: str | None
    schedule: Schedule
    deletion: Literal["deactivate", "delete"]
    deletion_guard: Guard
    last_run: SyncRunSummary | None
    waiting_approval: int | None = Field(description="the guarded run waiting for approval, if any")


class SourcePage(Page[SourceOut]):
    pass


class RunPage(Page[SyncRunSummary]):
    pass


class SourcePath(BaseModel):
    name: str


class RunPath(BaseModel):
    run_id: int = Field(ge=1, le=2**63 - 1)


class RunQuery(PageQuery):
    source: str | None = None
    status: StatusName | None = None
    mode: ModeName | None = None
    dry_run: bool | None = None


class StartQuery(WaitQuery):
    full: bool = Field(default=False, description="a full sync (finds deletions) rather than an incremental one")
    dry_run: bool = Field(default=False, description="record the plan, change nothing")
    approve_deletions: bool = Field(default=False, description="apply the removals of the run the deletion "
                                                               "guard stopped (a full sync)")


def summary_json(run: SyncRun) -> dict[str, Any]:
    detail = run.detail or {}
    return SyncRunSummary(
        id=run.id, source=run.source, mode=run.mode, dry_run=run.dry_run, status=run.status,
        started_at=run.started_at, finished_at=run.finished_at, added=run.added, updated=run.updated,
        deactivated=run.deactivated, unchanged=run.unchanged, errors=run.errors, guard=detail.get("guard"),
        approved_by=detail.get("approved_by"),
    ).model_dump(mode="json")


def run_json(run: SyncRun, waiting: bool) -> dict[str, Any]:
    detail = run.detail or {}
    return SyncRunOut(
        **summary_json(run), counts=detail.get("counts", {}), error=detail.get("error"),
        entry_errors=detail.get("errors", []), would_deactivate=detail.get("would_deactivate", []),
        would_delete_groups=detail.get("would_delete_groups", []), removed=detail.get("removed"),
        approves_run=detail.get("approves_run"), waiting_approval=waiting,
    ).model_dump(mode="json")


def source_json(source: LdapSourceConfig) -> dict[str, Any]:
    store = runtime().store
    with store.read() as session:
        last = session.scalar(select(SyncRun).where(SyncRun.source == source.name)
                              .order_by(SyncRun.id.desc()).limit(1))
        last_out = summary_json(last) if last is not None else None
    guarded = latest_guarded(store, source.name)
    return {
        "name": source.name, "preset": source.preset, "urls": list(source.url), "users_base": source.users_base,
        "groups_base": source.groups_base,
        "schedule": {"full": source.schedule.full, "incremental": source.schedule.incremental},
        "deletion": source.deletion, "deletion_guard": source.deletion_guard.model_dump(),
        "last_run": last_out, "waiting_approval": guarded.id if guarded is not None else None,
    }


def load_run(run_id: int) -> dict[str, Any]:
    with runtime().store.read() as session:
        run = session.get(SyncRun, run_id)
        if run is None:
            raise NotFound(f"no sync run {run_id}", field="run_id")
        source = run.source
    guarded = latest_guarded(runtime().store, source)
    with runtime().store.read() as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        return run_json(run, waiting=guarded is not None and guarded.id == run.id)


def known_source(name: str) -> LdapSourceConfig:
    try:
        return find_source(runtime(), name)
    except UnknownSource as exc:
        raise NotFound(str(exc), field="name") from None


@bp.get("/sync/sources", responses={200: SourcePage}, summary="The configured LDAP sources and their last runs")
def list_sources(query: PageQuery):  # type: ignore[no-untyped-def]
    return paged(query, [source_json(s) for s in runtime().config.ldap.sources])


@bp.get("/sync/sources/<name>", responses={200: SourceOut}, summary="One LDAP source")
def get_source(path: SourcePath):  # type: ignore[no-untyped-def]
    return jsonify(source_json(known_source(path.name)))


@bp.get("/sync/runs", responses={200: RunPage}, summary="Sync runs, newest first, filtered")
def list_runs(query: RunQuery):  # type: ignore[no-untyped-def]
    stmt = select(SyncRun)
    if query.source:
        stmt = stmt.where(SyncRun.source == query.source)
    if query.status:
        stmt = stmt.where(SyncRun.status == query.status)
    if query.mode:
        stmt = stmt.where(SyncRun.mode == query.mode)
    if query.dry_run is not None:
        stmt = stmt.where(SyncRun.dry_run.is_(query.dry_run))
    return page_of(stmt, [SyncRun.id.desc()], query, summary_json)


@bp.get("/sync/runs/<int:run_id>", responses={200: SyncRunOut},
        summary="One sync run with its detail: counts, errors, the deletion guard's plan")
def get_run(path: RunPath):  # type: ignore[no-untyped-def]
    return jsonify(load_run(path.run_id))


@bp.post("/sync/sources/<name>/runs", responses={200: SyncRunOut, 202: SyncAccepted, 409: ErrorBody},
         summary="Sync the source now (or approve the guarded run's removals); 202 while it runs on")
def start_sync(path: SourcePath, query: StartQuery):  # type: ignore[no-untyped-def]
    rt = runtime()
    source = known_source(path.name)
    try:
        flight = rt.runs.start_sync(source.name, full=query.full, dry_run=query.dry_run,
                                    approve_deletions=query.approve_deletions)
    except SyncBusy as exc:
        raise SyncBusyError(str(exc)) from None
    except NothingToApprove as exc:
        raise NothingToApproveError(str(exc), field="approve_deletions") from None
    if rt.runs.wait(flight, query.wait):
        sync_result(flight)  # raises what the sync raised (a store failure: a bug, logged)
        return jsonify(load_run(flight.run_id))
    with rt.store.read() as session:
        run = session.get(SyncRun, flight.run_id)
        assert run is not None
        summary = summary_json(run)
    response = jsonify(source=source.name, run=summary,
                       message=f"the sync of {source.name} goes on; follow it at {RUN_LOCATION}{flight.run_id}")
    response.headers["Location"] = f"{RUN_LOCATION}{flight.run_id}"
    return response, 202
