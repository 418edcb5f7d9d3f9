"""Prometheus metrics of one dirbridge process (prometheus-client), served at /metrics.

Each Runtime has a registry of its own, so nothing lives at import time and tests
can build several apps. What happens in the process (SCIM requests, checks,
logins, job runs) is counted where it happens; what the store already records
(LDAP sync runs, deletion-guard trips, the leader lease) is read at scrape time
by a collector, so every replica reports the same figures for them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from bridge.jobs.leader import LEASE_NAME
from bridge.services.conflicts import open_counts
from bridge.services.runs import SUCCEEDED, source_health
from bridge.store.models import LeaderLease, RunStatus, SyncRun

if TYPE_CHECKING:
    from bridge.runtime import Runtime

log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SYNC_COUNTS = ("added", "updated", "deactivated", "unchanged", "errors")


class StoreCollector(Collector):
    """Figures the store holds, read at each scrape."""

    def __init__(self, rt: Runtime):
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("dirbridge_store_up", "1 when the database answered this scrape")
        try:
            families = list(self._from_store())
        except SQLAlchemyError as exc:
            log.warning("metrics: the store did not answer: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _from_store(self) -> Iterator[Metric]:
        duration = GaugeMetricFamily("dirbridge_sync_last_duration_seconds",
                                     "duration of the last finished LDAP sync", labels=["source", "mode"])
        counts = GaugeMetricFamily("dirbridge_sync_last_entries", "entries of the last finished LDAP sync by outcome",
                                   labels=["source", "mode", "outcome"])
        status = GaugeMetricFamily("dirbridge_sync_last_status", "1 for the status of the last LDAP sync",
                                   labels=["source", "mode", "status"])
        guard = CounterMetricFamily("dirbridge_sync_guard_trips", "LDAP syncs stopped by the deletion guard",
                                    labels=["source"])
        leader = GaugeMetricFamily("dirbridge_leader", "1 while this replica holds the leader lease",
                                   labels=["replica"])
        succeeded = GaugeMetricFamily("dirbridge_sync_last_success_timestamp_seconds",
                                      "when the last LDAP sync that completed (ok or approved) finished, "
                                      "Unix time", labels=["source", "mode"])
        failing = GaugeMetricFamily("dirbridge_sync_consecutive_failures",
                                    "LDAP syncs of the source since its last completed one that failed, were "
                                    "interrupted or stopped by the guard", labels=["source"])
        conflicts = GaugeMetricFamily("dirbridge_conflicts_open", "open conflicts between sources by kind "
                                      "(user_name: a userName another source holds; writeback: an LDAP entry "
                                      "write-back did not create)", labels=["kind"])
        with self.rt.store.read() as session:
            latest = (select(SyncRun.source, SyncRun.mode, func.max(SyncRun.id).label("id"))
                      .where(SyncRun.finished_at.is_not(None), SyncRun.dry_run.is_(False))
                      .group_by(SyncRun.source, SyncRun.mode).subquery())
            for run in session.scalars(select(SyncRun).join(latest, SyncRun.id == latest.c.id)):
                labels = [run.source, run.mode]
                assert run.finished_at is not None
                duration.add_metric(labels, (run.finished_at - run.started_at).total_seconds())
                for outcome in SYNC_COUNTS:
                    counts.add_metric([*labels, outcome], getattr(run, outcome))
                status.add_metric([*labels, run.status], 1)
            trips = session.execute(select(SyncRun.source, func.count()).where(
                SyncRun.status.in_((RunStatus.guarded, RunStatus.approved)), SyncRun.dry_run.is_(False))
                .group_by(SyncRun.source))
            for source, count in trips:
                guard.add_metric([source], count)
            real = (SyncRun.dry_run.is_(False), SyncRun.finished_at.is_not(None))
            for source, mode, finished in session.execute(
                    select(SyncRun.source, SyncRun.mode, func.max(SyncRun.finished_at))
                    .where(*real, SyncRun.status.in_(SUCCEEDED)).group_by(SyncRun.source, SyncRun.mode)):
                if finished is not None:  # func.max keeps the column's type: an aware UTC datetime
                    succeeded.add_metric([source, mode], finished.timestamp())
            sources = {s.name for s in self.rt.config.ldap.sources}
            sources |= set(session.scalars(select(SyncRun.source).where(*real).distinct()))
            for source in sorted(sources):  # the status page's own rule (bridge.services.runs.source_health)
                failing.add_metric([source], source_health(session, source).failed_runs)
            lease = session.scalar(select(LeaderLease).where(LeaderLease.name == LEASE_NAME))
            for kind, count in open_counts(session).items():
                conflicts.add_metric([kind], count)
        holds = lease is not None and lease.holder == self.rt.replica and lease.expires_at > self.rt.clock()
        leader.add_metric([self.rt.replica], 1 if holds else 0)
        yield from (duration, counts, status, guard, succeeded, failing, leader, conflicts)



class Metrics:
    def __init__(self, rt: Runtime):
        self.registry = CollectorRegistry()
        self.scim_requests = Counter("dirbridge_scim_requests", "SCIM requests by client, method and status",
                                     ["client", "method", "status"], registry=self.registry)
        self.scim_seconds = Histogram("dirbridge_scim_request_seconds", "SCIM request latency", ["method"],
                                      buckets=LATENCY_BUCKETS, registry=self.registry)
        self.scim_ignored = Counter("dirbridge_scim_ignored", "parts of SCIM requests left out because dirbridge "
                                    "does not define them (scim.strict = false), by client and kind",
                                    ["client", "kind"], registry=self.registry)
        self.checks = Counter("dirbridge_checks", "authorization checks by answer", ["allowed"],
                              registry=self.registry)
        self.check_seconds = Histogram("dirbridge_check_seconds", "latency of an authorization check",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.logins = Counter("dirbridge_logins", "login attempts by outcome (ok or the error code)", ["outcome"],
                              registry=self.registry)
        self.job_runs = Counter("dirbridge_job_runs", "scheduled job runs by outcome", ["job", "outcome"],
                                registry=self.registry)
        self.registry.register(StoreCollector(rt))
