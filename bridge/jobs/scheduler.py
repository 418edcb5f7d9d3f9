"""APScheduler setup: missed runs coalesced, never two runs of one job at once. The
scheduler only says when: each turn goes to the run service (bridge.jobs.runner), which
runs it only on the replica holding the leader lease and records it as a JobRun with
its outcome and counts."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bridge.config import INTERVAL_RE, parse_interval
from bridge.jobs.leader import Leadership
from bridge.jobs.registry import JobSpec, job_specs
from bridge.services import runs
from bridge.services.errors import NotFound
from bridge.store.models import JobRun

if TYPE_CHECKING:
    from bridge.runtime import Runtime

log = logging.getLogger(__name__)
LEASE_JOB = "leader-lease"


def trigger_for(schedule: str) -> IntervalTrigger | CronTrigger:
    if INTERVAL_RE.match(schedule):
        return IntervalTrigger(seconds=parse_interval(schedule))
    return CronTrigger.from_crontab(schedule, timezone="UTC")


def run_job(rt: Runtime, spec: JobSpec, *, by_hand: bool = False) -> JobRun:
    """Run one job now through the run service and wait for it; its failure is recorded,
    not raised. ``by_hand``: refused (NotLeader) while another replica leads."""
    flight = rt.runs.start_job(spec, by_hand=by_hand)
    flight.wait()
    run = runs.job_run(rt.store, flight.run_id)
    assert run is not None
    return run


def find_job(rt: Runtime, name: str) -> JobSpec:
    for spec in job_specs(rt):
        if spec.name == name:
            return spec
    raise NotFound(f"no job named {name!r}; known: {', '.join(s.name for s in job_specs(rt))}")


def build_scheduler(rt: Runtime) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        timezone="UTC",
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
    )
    leadership = rt.leadership = Leadership(
        rt.store, rt.replica, rt.config.jobs.lease_seconds, clock=lambda: rt.clock(),
        on_take_over=lambda previous: runs.close_abandoned_jobs(rt.store, previous, rt.clock()))
    scheduler.add_job(leadership.try_acquire, IntervalTrigger(seconds=leadership.renew_every), id=LEASE_JOB,
                      name="acquire or renew the leader lease", next_run_time=rt.clock(),
                      misfire_grace_time=None)
    specs = job_specs(rt)
    for spec in specs:
        kwargs: dict[str, Any] = {"args": (spec,), "id": spec.name, "name": spec.description}
        scheduler.add_job(rt.runs.run_scheduled, trigger_for(spec.schedule), **kwargs)
    for unknown in sorted(set(rt.config.jobs.schedules) - {s.name for s in specs}):
        log.warning("jobs.schedules names %r, which is no job (known: %s)", unknown,
                    ", ".join(s.name for s in specs))
    return scheduler
