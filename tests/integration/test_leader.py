"""The leader lease: one replica runs the scheduled jobs, another takes over when it dies.
First the lease itself on SQLite and PostgreSQL with a clock the test moves, then two
real ``dirbridge serve`` processes on one PostgreSQL database, one of them killed."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bridge.jobs.leader import Leadership, current_leader
from bridge.jobs.registry import JobSpec
from bridge.store import Store
from bridge.store.models import JobRun
from tests.fixtures.accounts import FakeClock
from tests.fixtures.app import run_cli
from tests.fixtures.net import free_port, wait_for_port

LEASE = 5


def test_one_holder_at_a_time_and_take_over_after_expiry(store):
    clock = FakeClock()
    first, second = (Leadership(store, name, LEASE, clock=clock) for name in ("replica-a", "replica-b"))
    assert first.try_acquire() and first.is_leader()
    acquired = current_leader(store)
    assert acquired is not None and acquired.holder == "replica-a"
    assert not second.try_acquire() and not second.is_leader()
    clock.advance(seconds=3)
    assert first.try_acquire()  # renewed: the start of the leadership stays
    renewed = current_leader(store)
    assert renewed.acquired_at == acquired.acquired_at and renewed.expires_at > acquired.expires_at
    clock.advance(seconds=4)  # within the renewed lease
    assert not second.try_acquire()
    clock.advance(seconds=2)  # past it: the holder stopped renewing (died)
    assert not first.is_leader()  # a silent leader stops counting itself leader before the lease ends
    assert second.try_acquire() and second.is_leader()
    assert not first.try_acquire() and not first.is_leader()
    taken = current_leader(store)
    assert taken.holder == "replica-b" and taken.acquired_at == clock.now


def test_a_graceful_stop_hands_the_lease_over_at_once(store):
    clock = FakeClock()
    first, second = (Leadership(store, name, LEASE, clock=clock) for name in ("replica-a", "replica-b"))
    assert first.try_acquire()
    first.release()
    assert not first.is_leader() and second.try_acquire()


def test_the_new_leader_closes_the_job_runs_the_dead_one_left_running(store):
    from bridge.services import runs as run_records

    clock = FakeClock()
    dead = run_records.start_job(store, "audit-retention", "replica-a", clock())
    own = run_records.start_job(store, "audit-retention", "replica-c", clock())  # someone else's run
    taken_from: list[str] = []

    def close(previous: str) -> None:
        taken_from.append(previous)
        run_records.close_abandoned_jobs(store, previous, clock())

    first = Leadership(store, "replica-a", LEASE, clock=clock)
    second = Leadership(store, "replica-b", LEASE, clock=clock, on_take_over=close)
    assert first.try_acquire() and not second.try_acquire()
    assert run_records.job_run(store, dead).outcome == "running"  # type: ignore[union-attr]
    clock.advance(seconds=LEASE + 1)  # replica-a died
    assert second.try_acquire() and taken_from == ["replica-a"]
    closed = run_records.job_run(store, dead)
    assert closed is not None and closed.outcome == "failed" and "abandoned" in (closed.message or "")
    assert run_records.job_run(store, own).outcome == "running"  # type: ignore[union-attr]
    assert second.try_acquire() and taken_from == ["replica-a"]  # a renewal is no take-over


def test_only_the_leader_runs_scheduled_jobs(runtime):
    runs: list[str] = []
    spec = JobSpec("probe", "1h", lambda rt: runs.append(rt.replica) or {"ran": 1}, "test job")
    leadership = Leadership(runtime.store, "someone-else", LEASE)
    assert leadership.try_acquire()
    runtime.leadership = Leadership(runtime.store, runtime.replica, LEASE)
    assert not runtime.leadership.try_acquire()
    runtime.runs.run_scheduled(spec)
    assert runs == [] and _probe_runs(runtime.store) == []
    leadership.release()
    assert runtime.leadership.try_acquire()
    runtime.runs.run_scheduled(spec)
    assert [r.outcome for r in _probe_runs(runtime.store)] == ["ok"] and runs == [runtime.replica]


def _probe_runs(store: Store) -> list[JobRun]:
    with store.read() as session:
        return list(session.scalars(select(JobRun).where(JobRun.job == "probe")))


def _serve(tmp_path: Path, name: str, database_url: str) -> tuple[subprocess.Popen[str], int, Path]:
    port = free_port()
    directory = tmp_path / name
    directory.mkdir()
    config = directory / "dirbridge.toml"
    config.write_text(f'data_dir = "data"\n[server]\nlisten = "127.0.0.1:{port}"\n[database]\nurl = "{database_url}"\n'
                      f'[jobs]\nlease_seconds = {LEASE}\n[jobs.schedules]\naudit-retention = "1s"\n'
                      f'[logging]\nlevel = "warning"\n')
    exe = Path(sys.executable).parent / "dirbridge"
    proc = subprocess.Popen([str(exe), "serve", "--config", str(config)], cwd=directory,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
    except Exception:
        proc.kill()
        raise AssertionError(proc.communicate()[1]) from None
    return proc, port, config


def _post(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _runs(store: Store, since_id: int = 0) -> list[JobRun]:
    with store.read() as session:
        return list(session.scalars(select(JobRun).where(JobRun.id > since_id, JobRun.job == "audit-retention")
                                    .order_by(JobRun.id)))


def _wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_two_replicas_on_postgresql_one_leads_and_the_other_takes_over(tmp_path, postgres_url):
    setup = tmp_path / "setup.toml"
    setup.write_text(f'[database]\nurl = "{postgres_url}"\n')
    upgraded = run_cli("db", "upgrade", "--config", str(setup), cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    store = Store(postgres_url)
    served = [_serve(tmp_path, name, postgres_url) for name in ("one", "two")]
    procs = [proc for proc, _, _ in served]
    ports = {proc.pid: port for proc, port, _ in served}
    token = run_cli("token", "create", "ops", "--admin", "--config", str(setup), cwd=tmp_path)
    assert token.returncode == 0, token.stderr
    bearer = {"Authorization": f"Bearer {token.stdout.strip()}"}
    try:
        replicas = {proc.pid: f"{socket.gethostname()}:{proc.pid}" for proc in procs}
        _wait(lambda: len(_runs(store)) >= 4, 20, "runs of the leader")
        time.sleep(2)  # both replicas have been up for a while: still only one runs the jobs
        ran_on = {run.replica for run in _runs(store)}
        assert len(ran_on) == 1 and ran_on <= set(replicas.values()), ran_on
        leader_name = ran_on.pop()
        lease = current_leader(store)
        assert lease is not None and lease.holder == leader_name
        listed = run_cli("jobs", "--config", str(setup), cwd=tmp_path)
        assert f"leader: {leader_name} (holds the lease" in listed.stdout

        leader = next(p for p in procs if replicas[p.pid] == leader_name)
        follower = next(p for p in procs if p is not leader)
        follower_name = replicas[follower.pid]

        # "Run now" is the leader's: the follower refuses it, naming the leader, and runs nothing.
        before = _runs(store)[-1].id
        refused = _post(ports[follower.pid], "/api/v1/jobs/audit-retention/run", bearer)
        assert refused[0] == 409 and refused[1]["error"]["code"] == "notLeader", refused
        assert leader_name in refused[1]["error"]["message"]
        ran = _post(ports[leader.pid], "/api/v1/jobs/audit-retention/run?wait=30", bearer)
        assert ran[0] == 200 and ran[1]["outcome"] == "ok" and ran[1]["replica"] == leader_name, ran
        assert follower_name not in {run.replica for run in _runs(store, before)}
        cli_refused = run_cli("jobs", "run", "audit-retention", "--config", str(setup), cwd=tmp_path)
        assert cli_refused.returncode == 1 and leader_name in cli_refused.stderr, cli_refused.stderr
        last_id = _runs(store)[-1].id
        leader.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        leader.wait(timeout=10)
        first = _wait(lambda: _runs(store, last_id), LEASE + 6, "a run after the kill")[0]
        taken_after = time.monotonic() - killed_at
        assert first.replica == follower_name
        assert taken_after <= LEASE + 3, taken_after  # within the lease (plus a renewal interval and a run)
        assert current_leader(store).holder == follower_name
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.communicate()
        store.dispose()
