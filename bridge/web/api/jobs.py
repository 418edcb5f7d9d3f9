"""/api/v1/jobs and /api/v1/job-runs: the scheduled jobs, their runs, and running one now.

A job run started here is recorded first and runs in the process's run service
(bridge.jobs.runner), on the replica that leads the scheduled jobs: another replica
answers 409 ``notLeader`` naming the leader. The request waits up to ``wait`` seconds,
then answers 200 with the finished run or 202 with the run in progress (follow it at
/api/v1/job-runs/{id}).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import jsonify
from pydantic import BaseModel, Field
from sqlalchemy import select

from bridge.jobs.registry import JobSpec, job_specs
from bridge.jobs.scheduler import find_job
from bridge.services.errors import NotFound
from bridge.store.models import JobRun
from bridge.web import runtime
from bridge.web.api.background import WaitQuery
from bridge.web.api.common import ErrorBody, Page, PageQuery, make_blueprint, page_of, paged
from bridge.web.api.headers import location, model_headers

bp = make_blueprint("api_jobs", __name__, "jobs", "Scheduled jobs and their runs")

OutcomeName = Literal["running", "ok", "failed", "interrupted"]
RUN_LOCATION = "/api/v1/job-runs/"  # + the run's id: the Location of a 202


class JobRunOut(BaseModel):
    id: int
    job: str
    replica: str = Field(description="the process that ran it (host:pid)")
    started_at: datetime
    finished_at: datetime | None
    outcome: OutcomeName
    counts: dict[str, Any] = Field(description="what the job did (deleted, synced, ...)")
    message: str | None = Field(description="why it failed")


class JobOut(BaseModel):
    name: str
    description: str
    schedule: str = Field(description="an interval (15m, 1h) or a cron expression in UTC")
    next_run_at: datetime | None = Field(description="when this process's scheduler runs it next (null: no "
                                                     "scheduler here; only the leader replica runs jobs)")
    last_run: JobRunOut | None


class JobAccepted(BaseModel):
    model_config = model_headers(location(RUN_LOCATION, "the job run"))

    job: str
    run: JobRunOut = Field(description="the run in progress")
    message: str


class JobPage(Page[JobOut]):
    pass


class JobRunPage(Page[JobRunOut]):
    pass


class JobPath(BaseModel):
    name: str


class JobRunPath(BaseModel):
    run_id: int = Field(ge=1, le=2**63 - 1)


class JobRunQuery(PageQuery):
    job: str | None = None
    outcome: OutcomeName | None = None


def job_run_json(run: JobRun) -> dict[str, Any]:
    return JobRunOut(id=run.id, job=run.job, replica=run.replica, started_at=run.started_at,
                     finished_at=run.finished_at, outcome=run.outcome, counts=run.counts or {},
                     message=run.message).model_dump(mode="json")


def next_run_at(name: str) -> datetime | None:
    scheduler = runtime().scheduler
    if scheduler is None:
        return None
    scheduled = scheduler.get_job(name)
    return getattr(scheduled, "next_run_time", None) if scheduled is not None else None


def job_json(spec: JobSpec) -> dict[str, Any]:
    with runtime().store.read() as session:
        last = session.scalar(select(JobRun).where(JobRun.job == spec.name).order_by(JobRun.id.desc()).limit(1))
        last_out = job_run_json(last) if last is not None else None
    return JobOut(name=spec.name, description=spec.description, schedule=spec.schedule,
                  next_run_at=next_run_at(spec.name), last_run=last_out).model_dump(mode="json")


def known_job(name: str) -> JobSpec:
    try:
        return find_job(runtime(), name)
    except NotFound as exc:
        exc.field = "name"
        raise


@bp.get("/jobs", responses={200: JobPage}, summary="Every job: schedule, next run here, last run")
def list_jobs(query: PageQuery):  # type: ignore[no-untyped-def]
    return paged(query, [job_json(s) for s in job_specs(runtime())])


@bp.get("/jobs/<name>", responses={200: JobOut}, summary="One job")
def get_job(path: JobPath):  # type: ignore[no-untyped-def]
    return jsonify(job_json(known_job(path.name)))


@bp.post("/jobs/<name>/run", responses={200: JobRunOut, 202: JobAccepted, 409: ErrorBody, 503: ErrorBody},
         summary="Run a job now on the leading replica (409 notLeader elsewhere); 202 while it runs on")
def run_now(path: JobPath, query: WaitQuery):  # type: ignore[no-untyped-def]
    rt = runtime()
    spec = known_job(path.name)
    flight = rt.runs.start_job(spec)  # NotLeader, JobBusy: 409; Stopping: 503
    finished = rt.runs.wait(flight, query.wait)
    if finished and flight.error is not None:  # the job's own failure is recorded; this is the store failing
        raise flight.error
    with rt.store.read() as session:
        run = session.get(JobRun, flight.run_id)
        assert run is not None
        body = job_run_json(run)
    if finished:
        return jsonify(body)
    response = jsonify(job=spec.name, run=body,
                       message=f"{spec.name} goes on; follow it at {RUN_LOCATION}{flight.run_id}")
    response.headers["Location"] = f"{RUN_LOCATION}{flight.run_id}"
    return response, 202


@bp.get("/job-runs", responses={200: JobRunPage}, summary="Job runs, newest first, filtered")
def list_job_runs(query: JobRunQuery):  # type: ignore[no-untyped-def]
    stmt = select(JobRun)
    if query.job:
        stmt = stmt.where(JobRun.job == query.job)
    if query.outcome:
        stmt = stmt.where(JobRun.outcome == query.outcome)
    return page_of(stmt, [JobRun.id.desc()], query, job_run_json)


@bp.get("/job-runs/<int:run_id>", responses={200: JobRunOut}, summary="One job run")
def get_job_run(path: JobRunPath):  # type: ignore[no-untyped-def]
    with runtime().store.read() as session:
        run = session.get(JobRun, path.run_id)
        if run is None:
            raise NotFound(f"no job run {path.run_id}", field="run_id")
        return jsonify(job_run_json(run))
