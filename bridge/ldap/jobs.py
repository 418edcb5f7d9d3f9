"""The scheduled syncs: a full and an incremental job per source, on the source's
``schedule``. Two runs of one source never overlap: the scheduler runs each job
once at a time, and the source lock (bridge.ldap.lock) keeps the full and the
incremental job, other processes and the CLI apart."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from bridge.jobs.registry import JobFailed
from bridge.ldap.lock import SyncBusy
from bridge.ldap.sync import run_sync
from bridge.services.runs import RunInterrupted
from bridge.store.models import RunStatus

if TYPE_CHECKING:
    from bridge.jobs.registry import JobSpec
    from bridge.runtime import Runtime


class SyncNotApplied(JobFailed):
    """A scheduled sync failed or was stopped by the deletion guard (the job shows failed);
    its message starts with the sync run it names (``run_of_failure`` reads it back)."""


def _about(run_id: int | None, text: str) -> str:
    return f"run {run_id}{text}"


def run_of_failure(job: str, message: str | None) -> int | None:
    """The sync run a failed or interrupted sync job's message names, or None: the status
    page lists that run and not the job again."""
    found = re.match(r"run (\d+)\b", message or "") if job.startswith("ldap-") else None
    return int(found.group(1)) if found else None


def _runner(name: str, full: bool) -> Any:
    def run(rt: Runtime) -> dict[str, Any]:
        try:
            result = run_sync(rt, name, full=full)
        except SyncBusy:
            return {"skipped": 1}
        counts = {k: v for k, v in result.counts.as_dict().items() if v}
        if result.status == RunStatus.interrupted:
            raise RunInterrupted(_about(result.run_id, f": {result.error}"))
        if result.status == RunStatus.failed:
            raise SyncNotApplied(_about(result.run_id, f": {result.error}"))
        if result.status == RunStatus.guarded:
            raise SyncNotApplied(_about(result.run_id, f" stopped by the deletion guard: {result.guard}; "
                                                       f"approve with: dirbridge sync {name} --approve-deletions"))
        return {"run": result.run_id, **counts}
    return run


def sync_job_specs(rt: Runtime) -> list[JobSpec]:
    from bridge.jobs.registry import JobSpec

    specs = []
    for source in rt.config.ldap.sources:
        if source.schedule.full:
            specs.append(JobSpec(f"ldap-full:{source.name}", source.schedule.full, _runner(source.name, True),
                                 f"full LDAP sync of {source.name} (finds deletions)"))
        if source.schedule.incremental:
            specs.append(JobSpec(f"ldap-incremental:{source.name}", source.schedule.incremental,
                                 _runner(source.name, False), f"incremental LDAP sync of {source.name}"))
    return specs
