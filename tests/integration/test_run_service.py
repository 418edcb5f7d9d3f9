"""The run service (bridge/jobs/runner.py) in one process: every run is recorded before
it starts, a job runs once at a time, nothing starts once the process stops, and a run
that outlives the stop deadline is recorded as interrupted, never left "running"."""

from __future__ import annotations

import threading
import time

import pytest

from bridge.jobs import runner
from bridge.jobs.registry import JobSpec
from bridge.jobs.runner import JobBusy, Stopping
from bridge.services import runs
from bridge.store.models import JobOutcome


def _blocking(release: threading.Event, started: threading.Event) -> JobSpec:
    def work(_rt: object) -> dict[str, int]:
        started.set()
        release.wait(30)
        return {"done": 1}

    return JobSpec("probe", "1h", work, "a job the test holds")


def test_a_run_is_recorded_before_its_work_starts(runtime) -> None:
    release, started = threading.Event(), threading.Event()
    flight = runtime.runs.start_job(_blocking(release, started))
    recorded = runs.job_run(runtime.store, flight.run_id)
    assert recorded is not None and recorded.outcome == JobOutcome.running and recorded.job == "probe"
    assert started.wait(10)
    release.set()
    assert flight.wait(10)
    finished = runs.job_run(runtime.store, flight.run_id)
    assert finished is not None and finished.outcome == JobOutcome.ok and finished.counts == {"done": 1}
    assert finished.finished_at is not None


def test_a_job_runs_once_at_a_time_in_a_process(runtime) -> None:
    release, started = threading.Event(), threading.Event()
    spec = _blocking(release, started)
    first = runtime.runs.start_job(spec)
    try:
        with pytest.raises(JobBusy):
            runtime.runs.start_job(spec)
        runtime.runs.run_scheduled(spec)  # the scheduler's turn is skipped, not queued
    finally:
        release.set()
    assert first.wait(10)
    assert runtime.runs.start_job(spec).wait(10)  # free again


def test_a_job_that_outlives_the_deadline_is_recorded_interrupted(runtime, monkeypatch) -> None:
    monkeypatch.setattr(runner, "INTERRUPT_GRACE_SECONDS", 0.2)
    release, started = threading.Event(), threading.Event()
    flight = runtime.runs.start_job(_blocking(release, started))
    assert started.wait(10)
    began = time.monotonic()
    runtime.runs.stop(time.monotonic() + 0.3)
    took = time.monotonic() - began
    try:
        assert flight.done.is_set() and flight.interrupted
        assert 0.3 <= took < 3, took
        row = runs.job_run(runtime.store, flight.run_id)
        assert row is not None and row.outcome == JobOutcome.interrupted and row.finished_at is not None
        assert "stopped before the run ended" in (row.message or "")
        with pytest.raises(Stopping):
            runtime.runs.start_job(_blocking(threading.Event(), threading.Event()))
    finally:
        release.set()
    # the work ending late does not overwrite the record: it was interrupted
    deadline = time.monotonic() + 5
    while runtime.runs.in_flight() and time.monotonic() < deadline:
        time.sleep(0.05)
    row = runs.job_run(runtime.store, flight.run_id)
    assert row is not None and row.outcome == JobOutcome.interrupted


def test_a_run_that_ends_in_time_is_waited_for(runtime) -> None:
    release, started = threading.Event(), threading.Event()
    flight = runtime.runs.start_job(_blocking(release, started))
    assert started.wait(10)
    threading.Timer(0.3, release.set).start()
    runtime.runs.stop(time.monotonic() + 10)
    assert flight.done.is_set() and not flight.interrupted
    row = runs.job_run(runtime.store, flight.run_id)
    assert row is not None and row.outcome == JobOutcome.ok


def test_the_api_answers_202_with_the_recorded_run_and_503_once_stopping(client, admin_headers, runtime,
                                                                      monkeypatch) -> None:
    release, started = threading.Event(), threading.Event()
    spec = _blocking(release, started)
    monkeypatch.setattr("bridge.web.api.jobs.find_job", lambda _rt, _name: spec)
    try:
        accepted = client.post("/api/v1/jobs/probe/run?wait=0", headers=admin_headers)
        assert accepted.status_code == 202, accepted.json
        run_id = accepted.json["run"]["id"]
        assert accepted.headers["Location"] == f"/api/v1/job-runs/{run_id}"
        assert accepted.json["run"]["outcome"] == "running"
        busy = client.post("/api/v1/jobs/probe/run?wait=0", headers=admin_headers)
        assert busy.status_code == 409 and busy.json["error"]["code"] == "jobBusy"
    finally:
        release.set()
    deadline = time.monotonic() + 10
    while client.get(f"/api/v1/job-runs/{run_id}", headers=admin_headers).json["outcome"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    runtime.runs.begin_stop()
    stopping = client.post("/api/v1/jobs/probe/run", headers=admin_headers)
    assert stopping.status_code == 503 and stopping.json["error"]["code"] == "stopping"
    assert stopping.headers["Retry-After"] == "5"


def test_a_waiting_request_answers_once_the_process_stops(client, admin_headers, runtime, monkeypatch) -> None:
    """A request waiting up to 300 s for its run must not hold the listener's shutdown."""
    release, started = threading.Event(), threading.Event()
    spec = _blocking(release, started)
    monkeypatch.setattr("bridge.web.api.jobs.find_job", lambda _rt, _name: spec)
    threading.Timer(0.5, runtime.runs.begin_stop).start()
    began = time.monotonic()
    try:
        answer = client.post("/api/v1/jobs/probe/run?wait=300", headers=admin_headers)
    finally:
        release.set()
    assert answer.status_code == 202 and time.monotonic() - began < 5


def test_two_requests_racing_to_run_a_job_get_one_run(runtime) -> None:
    release, started = threading.Event(), threading.Event()
    spec = _blocking(release, started)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def race() -> None:
        barrier.wait()
        try:
            runtime.runs.start_job(spec)
            outcomes.append("ran")
        except JobBusy:
            outcomes.append("busy")

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    release.set()
    assert sorted(outcomes) == ["busy"] * 7 + ["ran"]
    from sqlalchemy import func, select

    from bridge.store.models import JobRun

    with runtime.store.read() as session:
        assert session.scalar(select(func.count()).select_from(JobRun).where(JobRun.job == "probe")) == 1
