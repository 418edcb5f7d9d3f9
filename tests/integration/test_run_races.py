"""Races around the run service, the lease and the run records, each forced with a hook
at the exact statement where two parties meet (found by an attacker's pass over the run
service): a lease given up while another takes it, a lease turn in flight at the graceful
stop, a run finishing while the stop marks it interrupted, a run starting as the stop
begins, a scheduled sync still running at the deadline."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from bridge.clock import utcnow
from bridge.jobs import runner
from bridge.jobs.leader import Leadership, current_leader
from bridge.jobs.registry import JobSpec
from bridge.ldap.lock import SyncBusy, source_lock
from bridge.ldap.plan import Counts, SyncResult
from bridge.services import runs
from bridge.store import Store
from bridge.store.leases import Leases
from bridge.store.models import JobOutcome, RunStatus, SyncRun
from tests.fixtures.app import make_config


def _on_statement(store: Store, starts: str, action: Any, when: str = "after_cursor_execute") -> threading.local:
    """Run ``action`` once, in the thread that sets ``.armed``, right at its first statement
    starting with ``starts``."""
    armed = threading.local()

    def hook(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if getattr(armed, "on", False) and statement.lstrip().upper().startswith(starts):
            armed.on = False
            action()

    event.listen(store.engine, when, hook)
    return armed


def test_a_lease_given_up_while_another_takes_it_is_taken(store: Store) -> None:
    holder_side = Store(store.url)
    try:
        Leases(holder_side).take("ldap-sync:corp", "replica-a", 45)
        def release() -> None:  # the holder's sync ends right now
            ending = threading.Thread(target=Leases(holder_side).release, args=("ldap-sync:corp", "replica-a"))
            ending.start()
            if not store.is_sqlite:
                ending.join(10)  # PostgreSQL: deleted before the taker's UPDATE
            releases.append(ending)

        releases: list[threading.Thread] = []
        armed = _on_statement(store, "INSERT INTO LEADER_LEASES", release)  # found the row: did nothing
        armed.on = True
        if store.is_sqlite:  # the taker holds the write lock: the release waits for it
            with pytest.raises(SyncBusy):
                with source_lock(store, "corp", "replica-b"):
                    pass
        else:  # ... and the holder deletes it before the UPDATE: taken on the second try
            with source_lock(store, "corp", "replica-b") as lease:
                assert Leases(store).current("ldap-sync:corp").holder == lease.holder  # type: ignore[union-attr]
    finally:
        for ending in releases:
            ending.join(40)
        holder_side.dispose()
    assert Leases(store).current("ldap-sync:corp") is None  # given up by both in the end


def test_takes_and_releases_racing_never_fail(store: Store) -> None:
    """Another holder taking and giving the lease up in a tight loop: a take either gets it,
    or sees the other holder, or (rarely, when the row vanished between its statements
    TRIES times over) says so with LeaseContended, which the sync lock answers as busy;
    never anything else."""
    from bridge.store.leases import LeaseContended

    other = Store(store.url)
    errors: list[BaseException] = []
    stop = threading.Event()

    def holder() -> None:
        leases = Leases(other)
        while not stop.is_set():
            leases.take("ldap-sync:corp", "a", 45)
            leases.release("ldap-sync:corp", "a")

    thread = threading.Thread(target=holder)
    thread.start()
    leases = Leases(store)
    contended = 0
    try:
        for _ in range(300):
            try:
                if leases.take("ldap-sync:corp", "b", 45).holder == "b":
                    leases.release("ldap-sync:corp", "b")
            except LeaseContended:
                contended += 1
            except Exception as exc:  # noqa: BLE001 - counted
                errors.append(exc)
    finally:
        stop.set()
        thread.join()
        other.dispose()
    assert not errors, f"{len(errors)} takes raised: {errors[0]!r}"
    assert contended <= 3, contended  # of 300


def test_a_lease_turn_in_flight_at_the_stop_does_not_take_the_lease_back(store: Store) -> None:
    leadership = Leadership(store, "replica-a", 30)
    assert leadership.try_acquire()
    in_take, go_on = threading.Event(), threading.Event()

    def pause() -> None:
        in_take.set()
        go_on.wait(10)

    armed = _on_statement(store, "INSERT INTO LEADER_LEASES", pause, when="before_cursor_execute")

    def turn() -> None:  # the scheduler's lease job, started just before shutdown(wait=False)
        armed.on = True
        leadership.try_acquire()

    thread = threading.Thread(target=turn)
    thread.start()
    assert in_take.wait(10)
    if store.is_sqlite:
        go_on.set()  # the turn holds the write lock; release() comes after it
        thread.join(10)
        leadership.release()
    else:
        releaser = threading.Thread(target=leadership.release)
        releaser.start()
        releaser.join(2)
        go_on.set()
        thread.join(10)
        releaser.join(10)
    assert current_leader(store) is None and not leadership.is_leader()
    assert not leadership.try_acquire()  # and no later turn takes it either


def test_a_run_finishing_as_the_stop_marks_it_interrupted_is_one_or_the_other(store: Store) -> None:
    run_id = runs.start_run(store, "corp", "full", False, utcnow())
    read_done, go_on = threading.Event(), threading.Event()

    def pause() -> None:
        read_done.set()
        go_on.wait(3)  # PostgreSQL: the finish waits on the row lock meanwhile

    armed = _on_statement(store, "SELECT", pause)
    marked: list[bool] = []

    def stop_side() -> None:
        armed.on = True
        marked.append(runs.interrupt_sync(store, run_id, "interrupted: the process stopped", utcnow()))

    stopper = threading.Thread(target=stop_side)
    stopper.start()
    assert read_done.wait(10)
    counts = Counts()
    counts.added = 7
    result = SyncResult(run_id, "corp", "full", False, RunStatus.ok, counts, None, high_water_mark="mark")
    finishing = threading.Thread(target=lambda: marked.append(runs.finish_run(store, result, {}, utcnow())))
    finishing.start()
    time.sleep(0.3)
    go_on.set()
    stopper.join(10)
    finishing.join(10)
    with store.read() as session:
        row = session.get(SyncRun, run_id)
        assert row is not None
    assert sorted(marked) == [False, True], marked  # exactly one of them wrote
    if row.status == RunStatus.interrupted:
        assert row.high_water_mark is None and row.added == 0
    else:
        assert row.status == RunStatus.ok and row.high_water_mark == "mark" and row.added == 7


def test_a_run_starting_as_the_stop_begins_is_waited_for(runtime, monkeypatch) -> None:
    entered, go_on = threading.Event(), threading.Event()
    real = runs.start_job

    def slow_start_job(*args: Any, **kwargs: Any) -> int:  # the row's INSERT on a busy database
        entered.set()
        go_on.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner.runs, "start_job", slow_start_job)
    monkeypatch.setattr(runner, "INTERRUPT_GRACE_SECONDS", 0.2)
    release = threading.Event()
    spec = JobSpec("probe", "1h", lambda _rt: {"done": int(release.wait(30))}, "probe")
    flights: list[runner.Flight] = []
    starter = threading.Thread(target=lambda: flights.append(runtime.runs.start_job(spec, by_hand=False)))
    starter.start()
    try:
        assert entered.wait(10)
        threading.Timer(0.3, go_on.set).start()
        runtime.runs.stop(time.monotonic() + 1)
        starter.join(10)
        assert flights and flights[0].done.is_set() and flights[0].interrupted
        row = runs.job_run(runtime.store, flights[0].run_id)
        assert row is not None and row.outcome == JobOutcome.interrupted
    finally:
        go_on.set()
        release.set()


SOURCE = {"name": "corp", "url": "ldap://127.0.0.1:1", "users_base": "ou=people,dc=example,dc=org",
          "tls": {"mode": "none"}, "schedule": {"full": "1d", "incremental": "15m"}}


def test_a_scheduled_sync_still_running_at_the_deadline_is_recorded_interrupted(store, tmp_path: Path,
                                                                               monkeypatch) -> None:
    from bridge.ldap import sync
    from bridge.ldap.jobs import sync_job_specs
    from bridge.runtime import build_runtime

    rt = build_runtime(make_config(ldap={"sources": [SOURCE]}).model_copy(update={"data_dir": tmp_path}),
                       store=store)
    monkeypatch.setattr(runner, "INTERRUPT_GRACE_SECONDS", 0.2)
    release, started = threading.Event(), threading.Event()

    def stuck_batch(self: Any, run_id: int, mode: str, mark: str | None) -> None:  # a directory that hangs
        started.set()
        release.wait(30)
        raise RuntimeError("ended late")

    monkeypatch.setattr(sync.SourceSync, "run", stuck_batch)
    spec = next(s for s in sync_job_specs(rt) if s.name == "ldap-full:corp")
    flight = rt.runs.start_job(spec, by_hand=False)  # what the scheduler's turn does
    try:
        assert started.wait(10)
        rt.runs.stop(time.monotonic() + 0.2)
        assert flight.interrupted
        assert runs.job_run(rt.store, flight.run_id).outcome == JobOutcome.interrupted  # type: ignore[union-attr]
        with rt.store.read() as session:
            statuses = [r.status for r in session.scalars(select(SyncRun).where(SyncRun.source == "corp"))]
        assert statuses == [RunStatus.interrupted]
    finally:
        release.set()


def test_a_run_that_ended_ok_just_before_the_mark_is_not_reported_interrupted(runtime, monkeypatch) -> None:
    monkeypatch.setattr(runner, "INTERRUPT_GRACE_SECONDS", 0.0)
    recorded = threading.Event()
    spec = JobSpec("probe", "1h", lambda _rt: {"done": 1}, "probe")
    real_job = runtime.runs._job

    def job_then_linger(spec: JobSpec, run_id: int) -> Any:  # recorded ok, not yet out of flight
        outcome = real_job(spec, run_id)
        recorded.set()
        time.sleep(0.5)
        return outcome

    monkeypatch.setattr(runtime.runs, "_job", job_then_linger)
    flight = runtime.runs.start_job(spec, by_hand=False)
    assert recorded.wait(10)
    runtime.runs.stop(time.monotonic())
    assert runs.job_run(runtime.store, flight.run_id).outcome == JobOutcome.ok  # type: ignore[union-attr]
    assert not flight.interrupted


@pytest.mark.parametrize("wait", ["nan", "-0", "1e-400", "300.0000000001", "inf"])
def test_odd_wait_values_are_answered_without_a_5xx(client, admin_headers, wait: str) -> None:
    answer = client.post(f"/api/v1/jobs/operator-sessions/run?wait={wait}", headers=admin_headers)
    assert answer.status_code in (200, 202, 422), (answer.status_code, answer.json)
