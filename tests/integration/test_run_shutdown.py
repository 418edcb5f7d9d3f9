"""SIGTERM while an API-started LDAP sync runs, against a real ``dirbridge serve`` and slapd:
the sync either finishes within ``server.shutdown_timeout`` or is recorded as interrupted
with exactly what it applied; never a run left "running", never a half-applied batch.
The next sync picks up where the directory stands."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bridge.config import load_config_data
from bridge.store import Store
from bridge.store.models import RunStatus, SyncRun, User
from tests.fixtures.app import run_cli
from tests.fixtures.net import free_port
from tests.fixtures.slapd import LdapTree
from tests.integration.test_daemon import server_output, start_serve

ENTRIES = 3000
BATCH = 20


@pytest.fixture(scope="module")
def many_people(slapd):  # type: ignore[no-untyped-def]
    """A subtree with ENTRIES people, shared by this module's tests (each syncs it into its
    own database)."""
    tree = LdapTree(slapd, "t-shutdown")
    tree.server.ldapadd("".join(
        f"dn: uid=p{i:05d},{tree.users_base}\nobjectClass: inetOrgPerson\nuid: p{i:05d}\n"
        f"cn: person {i}\nsn: person\nmail: p{i:05d}@example.org\n\n" for i in range(ENTRIES)))
    yield tree
    tree.remove()


def _source(tree: LdapTree) -> str:
    server = tree.server
    return (f'[[ldap.sources]]\nname = "corp"\nurl = "{server.url}"\npreset = "openldap"\n'
            f'bind_dn = "{server.admin_dn}"\nbind_password = "{server.admin_password}"\n'
            f'users_base = "{tree.users_base}"\ngroups_base = "{tree.groups_base}"\n'
            f'page_size = {BATCH}\nwrite_batch = {BATCH}\ntls = {{ mode = "none" }}\n'
            'deletion_guard = { max_percent = 100, max_count = 100000, min_entries = 0 }\n')


def _post(port: int, path: str, token: str) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _sync_then_sigterm(tmp_path: Path, tree: LdapTree, shutdown_timeout: float) -> tuple[SyncRun, int, Store]:
    port = free_port()
    proc = start_serve(tmp_path, port, f"shutdown_timeout = {shutdown_timeout}\n{_source(tree)}")
    try:
        token = run_cli("token", "create", "ops", "--admin", "--config", "dirbridge.toml", cwd=tmp_path)
        assert token.returncode == 0, token.stderr
        status, body = _post(port, "/api/v1/sync/sources/corp/runs?full=true&wait=0", token.stdout.strip())
        assert status == 202 and body["run"]["status"] == "running", body
        run_id = body["run"]["id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=shutdown_timeout + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("serve did not stop:\n" + server_output(tmp_path)) from None
    assert proc.returncode == 0, server_output(tmp_path)
    store = Store(load_config_data({"data_dir": str(tmp_path / "data")}).database_url)
    with store.read() as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        session.expunge(run)
        users = session.scalar(select(func.count()).select_from(User).where(User.source == "ldap:corp")) or 0
    return run, users, store


def test_a_sync_still_running_at_the_deadline_is_recorded_interrupted(tmp_path, many_people) -> None:
    run, users, store = _sync_then_sigterm(tmp_path, many_people, shutdown_timeout=0.5)
    try:
        assert run.status == RunStatus.interrupted, (run.status, run.detail, server_output(tmp_path))
        assert run.finished_at is not None and "interrupted" in run.detail["error"]
        assert run.high_water_mark is None  # the next incremental run does not start from it
        # recorded is applied: every batch it counted is in the store, and nothing more
        assert users == run.added < ENTRIES and users % BATCH == 0, (users, run.added)
        # the next sync (the CLI here) completes from where the directory stands
        again = run_cli("sync", "corp", "--full", "--config", "dirbridge.toml", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        with store.read() as session:
            total = session.scalar(select(func.count()).select_from(User).where(User.source == "ldap:corp"))
            statuses = [r.status for r in session.scalars(select(SyncRun).order_by(SyncRun.id))]
        assert total == ENTRIES and statuses == [RunStatus.interrupted, RunStatus.ok]
    finally:
        store.dispose()


def test_a_sync_that_ends_within_the_timeout_is_waited_for(tmp_path, many_people) -> None:
    run, users, store = _sync_then_sigterm(tmp_path, many_people, shutdown_timeout=120)
    store.dispose()
    assert run.status == RunStatus.ok, (run.status, run.detail)
    assert users == run.added == ENTRIES
