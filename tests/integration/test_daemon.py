"""``dirbridge serve`` as a process: health, readiness, structured logs, graceful stop."""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bridge.config import load_config_data
from bridge.daemon import Daemon
from bridge.logs import JsonFormatter, Redactor
from bridge.runtime import build_runtime
from bridge.store import Store
from bridge.web import create_app
from tests.fixtures.net import free_port, wait_for_port


def get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def start_serve(tmp_path: Path, port: int, extra: str = "") -> subprocess.Popen[str]:
    """`dirbridge serve` in the background, its output in tmp_path/serve.log (a file, not a
    pipe: nothing drains a pipe while a test runs, and a full pipe stalls the server)."""
    config = tmp_path / "dirbridge.toml"
    config.write_text(f'data_dir = "data"\n[server]\nlisten = "127.0.0.1:{port}"\n{extra}')
    exe = Path(sys.executable).parent / "dirbridge"
    with (tmp_path / "serve.log").open("w") as log_file:
        proc = subprocess.Popen([str(exe), "serve", "--config", str(config)], cwd=tmp_path,
                                stdout=log_file, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port("127.0.0.1", port, timeout=20)
    except Exception:
        proc.kill()
        proc.wait()
        raise AssertionError(server_output(tmp_path)) from None
    return proc


def server_output(tmp_path: Path) -> str:
    return (tmp_path / "serve.log").read_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_health_and_stops_on_signal(tmp_path, signum):
    port = free_port()
    proc = start_serve(tmp_path, port)
    try:
        assert get(port, "/healthz") == (200, b'{"status":"ok"}\n')
        status, body = get(port, "/readyz")
        assert status == 200 and json.loads(body)["checks"] == {"database": "ok", "migrations": "ok"}
        assert get(port, "/status")[0] == 303  # to the operator login, which shows nothing else
        status, page = get(port, "/status/login")
        assert status == 200 and b"audit-retention" not in page
    finally:
        proc.send_signal(signum)
        proc.wait(timeout=30)
    output = server_output(tmp_path)
    assert proc.returncode == 0, output
    assert f"status page:   http://127.0.0.1:{port}/status" in output
    assert "dirbridge token create NAME" in output
    logs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    messages = [entry["msg"] for entry in logs]
    assert "serving" in messages and messages[-1] == "stopped"
    access = [entry for entry in logs if entry["logger"] == "bridge.http"]
    assert [entry["status"] for entry in access] == [303, 200] and all(entry["request_id"] for entry in access)


def _signal_thread(pid: int, tid: int, signum: int) -> None:
    """tgkill(2): a signal for one thread of another process, as the kernel may pick any
    thread that does not block it for a process-wide SIGTERM."""
    import ctypes
    import platform

    tgkill = {"x86_64": 234, "aarch64": 131}[platform.machine()]
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(tgkill, pid, tid, signum) == 0, ctypes.get_errno()


def test_serve_stops_when_the_signal_lands_on_a_worker_thread(tmp_path):
    """systemd's SIGTERM goes to the process; the kernel hands it to whichever thread it likes.
    The main thread must still wake and stop, not sleep on while a worker caught the signal."""
    port = free_port()
    proc = start_serve(tmp_path, port)
    try:
        assert get(port, "/healthz")[0] == 200
        workers = sorted(int(tid) for tid in os.listdir(f"/proc/{proc.pid}/task") if int(tid) != proc.pid)
        assert workers, "serve runs its listener and scheduler in threads"
        _signal_thread(proc.pid, workers[-1], signal.SIGTERM)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = server_output(tmp_path)
    assert proc.returncode == 0, output
    assert "received SIGTERM" in output and output.rstrip().endswith('"stopped"}'), output


def test_serve_on_a_taken_port_fails_clearly(tmp_path):
    port = free_port()
    first = start_serve(tmp_path, port)
    try:
        second_dir = tmp_path / "second"
        second_dir.mkdir()
        (second_dir / "dirbridge.toml").write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n')
        exe = Path(sys.executable).parent / "dirbridge"
        result = subprocess.run([str(exe), "serve", "--config", "dirbridge.toml"], cwd=second_dir,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    finally:
        first.terminate()
        first.wait(timeout=30)


@pytest.fixture
def daemon(tmp_path):
    config = load_config_data({"data_dir": str(tmp_path), "server": {"listen": f"127.0.0.1:{free_port()}"}})
    d = Daemon(build_runtime(config))
    yield d
    if not d.stopping.is_set():
        d.stopping.set()


def test_stop_lets_requests_in_flight_finish(daemon):
    entered, results = threading.Event(), []
    app = daemon.app

    @app.get("/test/slow")
    def slow():  # type: ignore[no-untyped-def]
        entered.set()
        time.sleep(1.0)
        return "finished"

    daemon.start()
    port = daemon.bound_port
    client = threading.Thread(target=lambda: results.append(get(port, "/test/slow")))
    client.start()
    assert entered.wait(5)
    daemon.stop()  # returns only when the request in flight is done
    client.join(5)
    assert results == [(200, b"finished")]
    with pytest.raises(OSError):
        get(port, "/healthz", timeout=1)


def test_stop_lets_running_jobs_finish(daemon):
    """A scheduled turn in flight at SIGTERM is a run of the run service: the stop waits for
    it (within server.shutdown_timeout) and it is recorded as finished, not interrupted."""
    from bridge.jobs.registry import JobSpec
    from bridge.services import runs

    started, finished = threading.Event(), threading.Event()

    def job(_rt) -> dict[str, int]:  # type: ignore[no-untyped-def]
        started.set()
        time.sleep(1.0)
        finished.set()
        return {"slept": 1}

    daemon.start()
    deadline = time.monotonic() + 10
    while not daemon.rt.leadership.is_leader():  # the scheduler's first turn takes the lease
        assert time.monotonic() < deadline
        time.sleep(0.05)
    daemon.scheduler.add_job(daemon.rt.runs.run_scheduled, args=(JobSpec("nap", "1h", job, "a nap"),))  # runs now
    assert started.wait(5)
    (flight,) = daemon.rt.runs.in_flight()
    daemon.stop()
    assert finished.is_set() and flight.done.is_set() and not flight.interrupted
    row = runs.job_run(daemon.rt.store, flight.run_id)
    assert row is not None and row.outcome == "ok" and row.counts == {"slept": 1}


def test_readyz_says_when_the_schema_is_behind(tmp_path, sqlite_url):
    config = load_config_data({"data_dir": str(tmp_path)})
    rt = build_runtime(config, store=Store(sqlite_url))  # never migrated
    response = create_app(rt).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["migrations"].startswith("at nothing, needs ")


def test_readyz_says_when_the_database_is_gone(tmp_path):
    config = load_config_data({"data_dir": str(tmp_path)})
    unreachable = Store(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none?connect_timeout=1")
    rt = build_runtime(config, store=unreachable)
    response = create_app(rt).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "unreachable: OperationalError"


def test_logs_are_json_lines_without_secrets():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(Redactor(["hunter2-bind-secret"]))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("bind failed for %s with %s", "cn=svc", "hunter2-bind-secret",
                   extra={"detail": "pw=hunter2-bind-secret"})
    line = json.loads(stream.getvalue())
    assert line["msg"] == "bind failed for cn=svc with ***"
    assert line["detail"] == "pw=***" and line["level"] == "warning"


def test_what_serve_creates_is_its_users_alone(tmp_path):
    """The embedded default on a fresh machine: the data directory 0700, the SQLite files
    (database, WAL, shared memory) and the kept secrets 0600, even under a loose umask;
    a data directory an older version made 0755 is tightened."""
    import os
    import stat

    old = os.umask(0o022)  # what a login shell usually has
    try:
        (tmp_path / "data").mkdir(mode=0o755)
        port = free_port()
        proc = start_serve(tmp_path, port)
        try:
            assert get(port, "/healthz")[0] == 200
            get(port, "/invite?token=x")  # makes the session secret
            get(port, "/scim/v2/Users")  # a write (the SCIM activity), so the WAL exists
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        os.umask(old)
    data = tmp_path / "data"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir()}
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert "dirbridge.sqlite3" in modes and "session.secret" in modes, modes
    assert {name: mode for name, mode in modes.items() if mode & 0o077} == {}, modes


def test_a_database_in_a_shared_directory_leaves_the_directory_as_it_is(tmp_path):
    """A SQLite file named in /tmp (or any sticky, world-writable directory) is the daemon's
    own, 0600; the directory is everyone's and keeps its mode (tightening /tmp to 0700 once
    locked every other user of the machine, the 389-DS test server's among them, out of it)."""
    import os
    import stat

    from bridge.store import Store, migrate

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    store = Store(f"sqlite:///{shared / 'dirbridge.sqlite3'}")
    try:
        migrate.upgrade(store.engine)
    finally:
        store.dispose()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE((shared / "dirbridge.sqlite3").stat().st_mode) == 0o600
