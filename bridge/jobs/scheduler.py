"""APScheduler setup: missed runs coalesced, never two runs of one job at once,
every run recorded as a JobRun with its outcome and counts, and only the replica
holding the leader lease runs scheduled jobs (``dirbridge jobs run`` runs anywhere)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bridge.config import INTERVAL_RE, parse_interval
from bridge.jobs.leader import Leadership
from bridge.jobs.registry import JobSpec, job_specs
from bridge.services.errors import NotFound
from bridge.store.models import JobOutcome, JobRun, utcnow

if TYPE_CHECKING:
    from bridge.runtime import Runtime

log = logging.getLogger(__name__)
LEASE_JOB = "leader-lease"


def trigger_for(schedule: str) -> IntervalTrigger | CronTrigger:
    if INTERVAL_RE.match(schedule):
        return IntervalTrigger(seconds=parse_interval(schedule))
    return CronTrigger.from_crontab(schedule, timezone="UTC")


def run_job(rt: Runtime, spec: JobSpec) -> JobRun:
    """Run one job now and record the run; a failure is recorded, not raised."""
    with rt.store.write() as session:
        run = JobRun(job=spec.name, replica=rt.replica)
        session.add(run)
    outcome, counts, message = JobOutcome.ok, {}, None
    try:
        counts = spec.run(rt)
    except Exception as exc:  # a job's failure must not kill the scheduler
        log.exception("job %s failed", spec.name, extra={"job": spec.name})
        outcome, message = JobOutcome.failed, f"{type(exc).__name__}: {exc}"
    with rt.store.write() as session:
        row = session.get(JobRun, run.id)
        assert row is not None
        row.finished_at, row.outcome, row.counts, row.message = utcnow(), outcome, counts, message
        run = row
    log.info("job %s %s", spec.name, outcome, extra={"job": spec.name, "outcome": outcome, "counts": counts})
    rt.metrics.job_runs.labels(spec.name, outcome).inc()
    return run


def find_job(rt: Runtime, name: str) -> JobSpec:
    for spec in job_specs(rt):
        if spec.name == name:
            return spec
    raise NotFound(f"no job named {name!r}; known: {', '.join(s.name for s in job_specs(rt))}")


def run_if_leader(rt: Runtime, spec: JobSpec) -> JobRun | None:
    """The scheduler's entry: every job, whoever registered it, runs only on the replica
    that holds the leader lease (bridge.jobs.leader); the others skip their turn."""
    leadership = rt.leadership
    if leadership is not None and not leadership.is_leader():
        log.debug("job %s skipped: another replica leads", spec.name, extra={"job": spec.name})
        return None
    return run_job(rt, spec)


def build_scheduler(rt: Runtime) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        timezone="UTC",
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
    )
    leadership = rt.leadership = Leadership(rt.store, rt.replica, rt.config.jobs.lease_seconds)
    scheduler.add_job(leadership.try_acquire, IntervalTrigger(seconds=leadership.renew_every), id=LEASE_JOB,
                      name="acquire or renew the leader lease", next_run_time=utcnow(),
                      misfire_grace_time=None)
    specs = job_specs(rt)
    for spec in specs:
        kwargs: dict[str, Any] = {"args": (rt, spec), "id": spec.name, "name": spec.description}
        scheduler.add_job(run_if_leader, trigger_for(spec.schedule), **kwargs)
    for unknown in sorted(set(rt.config.jobs.schedules) - {s.name for s in specs}):
        log.warning("jobs.schedules names %r, which is no job (known: %s)", unknown,
                    ", ".join(s.name for s in specs))
    return scheduler
