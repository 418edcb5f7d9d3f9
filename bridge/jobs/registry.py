"""The jobs dirbridge knows, each a function of the Runtime that returns its counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.runtime import Runtime


class JobFailed(Exception):
    """A job's own, explained failure (its message says what happened and what to do):
    recorded and logged as a warning, without a traceback."""


@dataclass(frozen=True)
class JobSpec:
    name: str
    schedule: str  # an interval like "1h" or a cron expression
    run: Callable[[Runtime], dict[str, Any]]
    description: str


def audit_retention(rt: Runtime) -> dict[str, Any]:
    """Delete audit events older than ``audit.retention_days``, and conflicts between
    sources resolved and job runs finished that long ago (frequent jobs add hundreds of
    runs a day)."""
    return dict(rt.services.purge_history(rt.clock() - timedelta(days=rt.config.audit.retention_days)))


def job_specs(rt: Runtime) -> list[JobSpec]:
    """Every job of this configuration."""
    from bridge.accounts.jobs import account_job_specs  # invitations, password expiry, lockout release
    from bridge.ldap.jobs import sync_job_specs  # the LDAP sync jobs: one full, one incremental per source
    from bridge.web.operator import operator_sessions_sweep  # the status page's sessions

    specs = [
        JobSpec("audit-retention", "1d", audit_retention,
                "delete audit events, resolved conflicts and job runs past their retention"),
        JobSpec("operator-sessions", "5m", operator_sessions_sweep,
                "end the status-page sessions of those who lost the operator right"),
        *sync_job_specs(rt),
        *account_job_specs(rt),
    ]
    overrides = rt.config.jobs.schedules  # [jobs.schedules]: the operator's word wins
    return [replace(s, schedule=overrides[s.name]) if s.name in overrides else s for s in specs]
