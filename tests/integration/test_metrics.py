"""/metrics in the Prometheus text format, parsed by prometheus-client's own parser, after
real activity: SCIM requests, checks, a login, a job run, LDAP sync runs in the store."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from bridge.clock import utcnow
from bridge.jobs.scheduler import find_job, run_job
from bridge.store.models import SyncRun
from tests.fixtures.app import create_token
from tests.integration.test_scim_http import CORE, Scim


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_what_happened(client, runtime, admin_headers):
    scim = Scim(client, create_token(runtime, "entra", "scim"))
    scim.post("/Users", {"schemas": [CORE], "userName": "metered@example.com"})
    client.get("/scim/v2/Users")  # no token: 401
    client.post("/api/v1/check", json={"user": "metered@example.com", "right": "x.read"}, headers=admin_headers)
    client.post("/api/v1/auth/login", json={"username": "nobody.here", "password": "wrong-password"},
                headers=admin_headers)
    run_job(runtime, find_job(runtime, "audit-retention"))
    started = utcnow() - timedelta(seconds=3)
    with runtime.store.write() as session:
        session.add_all([
            SyncRun(source="ldap:corp", mode="full", status="ok", started_at=started,
                    finished_at=started + timedelta(seconds=2), added=40, updated=2, errors=1),
            SyncRun(source="ldap:corp", mode="full", status="guarded", started_at=started + timedelta(seconds=2),
                    finished_at=started + timedelta(seconds=3), deactivated=0),
        ])

    samples = scrape(client)
    assert samples[("dirbridge_scim_requests_total",
                    (("client", "entra"), ("method", "POST"), ("status", "201")))] == 1
    assert samples[("dirbridge_scim_requests_total", (("client", ""), ("method", "GET"), ("status", "401")))] == 1
    assert samples[("dirbridge_checks_total", (("allowed", "false"),))] == 1
    assert samples[("dirbridge_check_seconds_count", ())] == 1
    assert samples[("dirbridge_logins_total", (("outcome", "invalidCredentials"),))] == 1
    assert samples[("dirbridge_job_runs_total", (("job", "audit-retention"), ("outcome", "ok")))] == 1
    assert samples[("dirbridge_store_up", ())] == 1
    assert samples[("dirbridge_sync_guard_trips_total", (("source", "ldap:corp"),))] == 1
    last = (("mode", "full"), ("source", "ldap:corp"))
    assert samples[("dirbridge_sync_last_duration_seconds", last)] == 1.0  # the guarded run is the last
    assert samples[("dirbridge_sync_last_status", (*last[:1], ("source", "ldap:corp"), ("status", "guarded")))] == 1
    assert samples[("dirbridge_leader", (("replica", runtime.replica),))] == 0  # no scheduler in this process
    ok_at = (started + timedelta(seconds=2)).timestamp()
    assert samples[("dirbridge_sync_last_success_timestamp_seconds", last)] == ok_at  # the ok run, not the guarded
    assert samples[("dirbridge_sync_consecutive_failures", (("source", "ldap:corp"),))] == 1


def test_failures_are_counted_since_the_last_completed_sync(client, runtime):
    started = utcnow() - timedelta(minutes=10)
    with runtime.store.write() as session:
        for n, status in enumerate(("failed", "ok", "failed", "interrupted", "guarded")):
            at = started + timedelta(minutes=n)
            session.add(SyncRun(source="corp", mode="incremental", status=status, started_at=at,
                                finished_at=at + timedelta(seconds=5)))
        session.add(SyncRun(source="corp", mode="full", status="failed", dry_run=True, started_at=started,
                            finished_at=started))  # a dry run counts for nothing
        session.add(SyncRun(source="other", mode="full", status="failed", started_at=started, finished_at=started))
    samples = scrape(client)
    assert samples[("dirbridge_sync_consecutive_failures", (("source", "corp"),))] == 3
    assert samples[("dirbridge_sync_consecutive_failures", (("source", "other"),))] == 1  # never completed
    assert ("dirbridge_sync_last_success_timestamp_seconds", (("mode", "incremental"), ("source", "corp"))) in samples
    assert ("dirbridge_sync_last_success_timestamp_seconds", (("mode", "full"), ("source", "other"))) not in samples


def test_the_shipped_alert_rules_use_metrics_dirbridge_exports(client):
    """config/prometheus-alerts.yml: valid YAML in Prometheus' rule-file shape, and every
    dirbridge_* series its expressions name is one /metrics serves."""
    import re

    import yaml

    from tests.fixtures.app import REPO

    rules = yaml.safe_load((REPO / "config" / "prometheus-alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len(alerts) >= 6 and all({"alert", "expr", "labels", "annotations"} <= set(rule) for rule in alerts)
    served = {name for name, _ in scrape(client)} | {
        "dirbridge_sync_last_success_timestamp_seconds", "dirbridge_sync_guard_trips_total",
        "dirbridge_scim_requests_total", "dirbridge_sync_consecutive_failures",
    }  # series that appear once a source is configured, a sync ran or a SCIM request came
    documented = client.get("/metrics").get_data(as_text=True)
    for rule in alerts:
        for name in re.findall(r"\bdirbridge_[a-z_]+", rule["expr"]):
            assert name in served and f"# HELP {name.removesuffix('_total')}" in documented, (rule["alert"], name)
