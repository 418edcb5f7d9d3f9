"""The systemd unit, its sysusers/tmpfiles files, and the daemon's side of Type=notify.

No systemd runs as PID 1 here (nor in CI's container), so the unit is checked with
systemd's own offline tools (``systemd-analyze verify`` and ``security --offline``,
``systemd-sysusers``/``systemd-tmpfiles --root``), and the sandbox that matters most to
the daemon, the unit's system call filter with MemoryDenyWriteExecute, is rebuilt with
libseccomp from systemd's own syscall lists and the daemon is run inside it.
"""

from __future__ import annotations

import ctypes.util
import errno
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from bridge.config import load_config_data
from bridge.daemon import Daemon
from bridge.notify import Notifier
from bridge.runtime import build_runtime
from tests.fixtures.net import free_port

ROOT = Path(__file__).resolve().parents[2]
UNIT_DIR = ROOT / "systemd"
UNIT = UNIT_DIR / "dirbridge.service"
SYSUSERS = UNIT_DIR / "dirbridge.sysusers"
TMPFILES = UNIT_DIR / "dirbridge.tmpfiles"
SHIPPED_EXEC_START = "/opt/dirbridge/bin/dirbridge serve --config /etc/dirbridge/dirbridge.toml"
DIRBRIDGE = Path(sys.executable).parent / "dirbridge"
#: The figure the README gives; the unit may only get better.
README_EXPOSURE = 1.1

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")


def unit_settings(path: Path = UNIT) -> dict[str, list[str]]:
    """Key -> values of a unit file (keys may repeat, as systemd allows)."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)


def runnable_copy(tmp_path: Path, replace: tuple[str, str] | None = None) -> Path:
    """The shipped unit with ExecStart pointing at this venv's dirbridge (verify checks that
    the binary exists and is executable), optionally with one more line replaced."""
    text = UNIT.read_text()
    assert f"ExecStart={SHIPPED_EXEC_START}\n" in text
    text = text.replace("/opt/dirbridge/bin/dirbridge", str(DIRBRIDGE))
    if replace is not None:
        assert replace[0] in text
        text = text.replace(*replace)
    copy = tmp_path / "dirbridge.service"
    copy.write_text(text)
    return copy


# --- (a) systemd-analyze verify ------------------------------------------------------------


@needs_systemd_analyze
def test_unit_verifies_without_a_single_warning(tmp_path):
    result = verify(runnable_copy(tmp_path))
    # verify exits 0 on unknown keys and unparsable values too (it only warns): any output fails.
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@needs_systemd_analyze
@pytest.mark.parametrize("broken", [("UMask=0077", "UMasq=0077"), ("WatchdogSec=30s", "WatchdogSec=thirty"),
                                    ("ExecStart=", "ExecStart=/nonexistent/dirbridge-missing ")])
def test_verify_as_used_above_does_catch_mistakes(tmp_path, broken):
    result = verify(runnable_copy(tmp_path, broken))
    assert result.returncode != 0 or result.stderr.strip(), result


def test_unit_matches_the_daemon_and_its_config():
    from bridge.config import ServerConfig

    s = unit_settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecStart"] == [SHIPPED_EXEC_START]
    assert s["User"] == ["dirbridge"] and s["StateDirectory"] == ["dirbridge"]
    seconds = {"s": 1, "min": 60}

    def span(text: str) -> float:
        number, unit = re.fullmatch(r"(\d+)(s|min)", text).groups()  # type: ignore[union-attr]
        return int(number) * seconds[unit]

    # the stop's deadline, then closing connections (1 + 5 s) and the runs' interrupt grace
    from bridge.jobs.runner import INTERRUPT_GRACE_SECONDS

    assert span(s["TimeoutStopSec"][0]) > ServerConfig().shutdown_timeout + 6 + INTERRUPT_GRACE_SECONDS
    assert span(s["WatchdogSec"][0]) >= 10  # the daemon pings every half of it
    # Every credential the unit loads has its file created by tmpfiles (a missing one
    # would stop the start), and the example config's names are among them.
    credentials = dict(value.split(":", 1) for value in s["LoadCredential"])
    tmpfiles = TMPFILES.read_text()
    for path in credentials.values():
        assert re.search(rf"^f {re.escape(path)} +0640 root +dirbridge", tmpfiles, re.M), path
    example = (ROOT / "config" / "dirbridge.example.toml").read_text()
    referenced = set(re.findall(r'^\w+_credential = "([^"]+)"', example, re.M))
    assert referenced and referenced <= set(credentials)


# --- (b) systemd-analyze security ----------------------------------------------------------


@needs_systemd_analyze
def test_security_exposure_is_at_most_the_readme_figure():
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for dirbridge\.service: (\d+\.\d)", result.stdout)
    assert match, result.stdout
    assert float(match[1]) <= README_EXPOSURE, result.stdout
    assert f"exposure level {README_EXPOSURE}" in (ROOT / "README.md").read_text()


# --- (d) sysusers and tmpfiles, applied to a scratch root ----------------------------------


@pytest.mark.skipif(not (shutil.which("systemd-sysusers") and shutil.which("systemd-tmpfiles")),
                    reason="systemd-sysusers/systemd-tmpfiles are not installed")
def test_sysusers_and_tmpfiles_create_the_user_and_directories(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    sysusers = subprocess.run(["systemd-sysusers", f"--root={root}", str(SYSUSERS)],
                              capture_output=True, text=True, timeout=60)
    assert sysusers.returncode == 0, sysusers.stderr
    entry = next(line.split(":") for line in (root / "etc/passwd").read_text().splitlines()
                 if line.startswith("dirbridge:"))
    uid, gid, home, shell = int(entry[2]), int(entry[3]), entry[5], entry[6]
    assert uid < 1000 and home == "/var/lib/dirbridge" and shell == "/usr/sbin/nologin"

    tmpfiles = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", str(TMPFILES)],
                              capture_output=True, text=True, timeout=60)
    assert tmpfiles.returncode == 0, tmpfiles.stderr
    expected = {  # path -> (mode, uid, gid)
        "etc/dirbridge": (0o750, 0, gid),
        "etc/dirbridge/credentials": (0o750, 0, gid),
        "etc/dirbridge/credentials/session-secret": (0o640, 0, gid),
        "var/lib/dirbridge": (0o700, uid, gid),
    }
    for path, want in expected.items():
        st = (root / path).stat()
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == want, path
    # "f" never truncates: a secret written by the operator survives the next run.
    secret = root / "etc/dirbridge/credentials/session-secret"
    secret.write_text("kept")
    subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", str(TMPFILES)], check=True, timeout=60)
    assert secret.read_text() == "kept"


# --- (c) the notify protocol, from a real `dirbridge serve` --------------------------------


class NotifySocket:
    """The receiving end of $NOTIFY_SOCKET, as systemd binds it."""

    def __init__(self, address: str):
        self.env_value = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)

    def receive(self, timeout: float) -> dict[str, str] | None:
        """The next message as a dict, or None when none came within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        return dict(line.split("=", 1) for line in data.decode().splitlines())

    def wait_for(self, key: str, timeout: float) -> tuple[dict[str, str], list[dict[str, str]]]:
        """The first message with ``key``, and every message before it."""
        deadline = time.monotonic() + timeout
        before: list[dict[str, str]] = []
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is None:
                break
            if key in message:
                return message, before
            before.append(message)
        raise AssertionError(f"no {key} within {timeout}s; got {before}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path) -> Iterator[NotifySocket]:
    receiver = NotifySocket(str(tmp_path / "notify"))
    yield receiver
    receiver.close()


def get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def start_serve(tmp_path: Path, config: str, env: dict[str, str], argv_prefix: list[str] | None = None,
                ) -> subprocess.Popen[bytes]:
    (tmp_path / "dirbridge.toml").write_text(config)
    log = (tmp_path / "serve.log").open("wb")
    with log:
        return subprocess.Popen([*(argv_prefix or []), str(DIRBRIDGE), "serve", "--config", "dirbridge.toml"],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_serve_notifies_ready_watchdog_and_stopping(tmp_path, kind):
    address = str(tmp_path / "notify") if kind == "path" else f"@dirbridge-test-{uuid.uuid4().hex}"
    notify_socket = NotifySocket(address)
    port = free_port()
    env = dict(os.environ, NOTIFY_SOCKET=notify_socket.env_value, WATCHDOG_USEC="400000")
    proc = start_serve(tmp_path, f'data_dir = "data"\n[server]\nlisten = "127.0.0.1:{port}"\n', env)
    try:
        ready, before = notify_socket.wait_for("READY", timeout=30)
        assert ready["READY"] == "1" and before == []  # nothing, no watchdog ping either, before READY
        assert ready["STATUS"] == f"serving on 127.0.0.1:{port}"
        assert get(port, "/healthz") == 200  # READY=1 means the socket is bound and served

        pings = [notify_socket.wait_for("WATCHDOG", timeout=2)[0] for _ in range(4)]
        assert all(p == {"WATCHDOG": "1"} for p in pings)

        proc.send_signal(signal.SIGTERM)
        stopping, _ = notify_socket.wait_for("STOPPING", timeout=10)
        assert stopping["STOPPING"] == "1"
        assert proc.wait(timeout=30) == 0
        assert notify_socket.receive(0.5) is None  # no watchdog ping after STOPPING=1
    finally:
        stop(proc)
        notify_socket.close()
    assert '"msg": "stopped"' in (tmp_path / "serve.log").read_text()


def test_watchdog_pings_only_while_healthy(tmp_path, monkeypatch, notify_socket):
    """A process whose database stops answering, or whose HTTP thread stops serving, stops
    pinging, so systemd restarts it; pings resume when the database is back."""
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.env_value)
    monkeypatch.setenv("WATCHDOG_USEC", "300000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    config = load_config_data({"data_dir": str(tmp_path), "jobs": {"enabled": False},
                               "server": {"listen": f"127.0.0.1:{free_port()}"}})
    daemon = Daemon(build_runtime(config))
    store = daemon.rt.store
    real_ping = store.ping

    def failing_ping() -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    daemon.start()
    try:
        notify_socket.wait_for("READY", timeout=5)
        notify_socket.wait_for("WATCHDOG", timeout=2)

        monkeypatch.setattr(store, "ping", failing_ping)
        unhealthy, _ = notify_socket.wait_for("STATUS", timeout=2)
        assert unhealthy["STATUS"] == "unhealthy: the database does not answer: OperationalError"
        assert notify_socket.receive(1.0) is None  # > 3 intervals without a ping

        monkeypatch.setattr(store, "ping", real_ping)
        assert notify_socket.wait_for("WATCHDOG", timeout=2)[0] == {"WATCHDOG": "1"}
        assert notify_socket.wait_for("STATUS", timeout=2)[0] == {"STATUS": "serving"}

        daemon.server.stop()  # the HTTP server is gone, the process lives on: wedged
        unhealthy, _ = notify_socket.wait_for("STATUS", timeout=2)
        assert unhealthy["STATUS"] == "unhealthy: the HTTP server thread is not serving"
        assert notify_socket.receive(1.0) is None
    finally:
        daemon.stop()


def test_notifier_addresses_and_watchdog_pid():
    assert not Notifier({}).enabled and Notifier({}).send(READY="1") is False
    assert Notifier({"NOTIFY_SOCKET": "@name"}).address == b"\0name"
    assert Notifier({"NOTIFY_SOCKET": "/run/systemd/notify"}).address == "/run/systemd/notify"
    assert Notifier({"NOTIFY_SOCKET": "relative"}).address is None
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_seconds == 30.0
    here = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": here}).watchdog_seconds == 30.0
    # systemd meant the watchdog for another process (ours is a child of the main one)
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getppid())}).watchdog_seconds is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_seconds is None


def test_a_notify_socket_that_is_gone_does_not_break_the_daemon(tmp_path):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert notifier.enabled and notifier.ready("serving") is False


# --- the unit's system call filter and MemoryDenyWriteExecute, rebuilt with libseccomp ----

# Run as `python -c SANDBOX ALLOWED_JSON PROGRAM ARGS...`: NoNewPrivileges, then the
# filters systemd installs for MemoryDenyWriteExecute=yes (mmap W+X, mprotect/pkey_mprotect
# with PROT_EXEC and shmat SHM_EXEC fail with EPERM) and SystemCallFilter= (everything not
# allowed kills the process: stricter than the unit's SystemCallErrorNumber=EPERM, so a
# forbidden call cannot hide behind a handled error), then exec.
SANDBOX = r"""
import ctypes, json, os, sys
class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]
lib = ctypes.CDLL("libseccomp.so.2")
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                       ctypes.POINTER(Cmp)]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
def ok(rc, what):
    if rc != 0:
        sys.exit(f"sandbox: {what} failed: {rc}")
ALLOW, KILL_PROCESS, EPERM, MASKED_EQ = 0x7FFF0000, 0x80000000, 0x00050000 | 1, 7
ok(ctypes.CDLL(None).prctl(38, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
mdwe = lib.seccomp_init(ALLOW)
for name, mask, value in [("mmap", 6, 6), ("mprotect", 4, 4), ("pkey_mprotect", 4, 4), ("shmat", 0o100000, 0o100000)]:
    ok(lib.seccomp_rule_add_array(mdwe, EPERM, lib.seccomp_syscall_resolve_name(name.encode()), 1,
                                  (Cmp * 1)(Cmp(2, MASKED_EQ, mask, value))), name)
ok(lib.seccomp_load(mdwe), "loading the MemoryDenyWriteExecute filter")
allow = lib.seccomp_init(KILL_PROCESS)
for name in json.loads(sys.argv[1]):
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr >= 0:  # names of other architectures resolve to nothing here
        ok(lib.seccomp_rule_add_array(allow, ALLOW, nr, 0, None), name)
ok(lib.seccomp_load(allow), "loading the system call filter")
os.execv(sys.argv[2], sys.argv[2:])
"""

#: Always allowed by systemd whatever the filter says (systemd.exec(5), SystemCallFilter=).
IMPLICITLY_ALLOWED = {"execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn",
                      "clock_gettime", "gettimeofday", "time", "nanosleep", "clock_nanosleep"}


def syscall_groups() -> dict[str, list[str]]:
    assert SYSTEMD_ANALYZE is not None
    out = subprocess.run([SYSTEMD_ANALYZE, "syscall-filter", "--no-pager"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        if not line[0].isspace():
            current = groups.setdefault(item, [])
        elif current is not None:
            current.append(item)
    return groups


def unit_allowed_syscalls() -> set[str]:
    """The allow list the unit's SystemCallFilter= lines produce, from systemd's own groups."""
    groups = syscall_groups()

    def expand(name: str) -> set[str]:
        return set().union(*(expand(m) for m in groups[name])) if name.startswith("@") else {name}

    allowed: set[str] = set()
    for value in unit_settings()["SystemCallFilter"]:
        deny = value.startswith("~")
        names = set().union(*(expand(n) for n in value.lstrip("~").split()))
        allowed = allowed - names if deny else allowed | names
    return allowed | IMPLICITLY_ALLOWED


@pytest.fixture(scope="module")
def sandbox_prefix() -> list[str]:
    if SYSTEMD_ANALYZE is None or ctypes.util.find_library("seccomp") is None:
        pytest.skip("systemd-analyze or libseccomp is not installed")
    return [sys.executable, "-c", SANDBOX, json.dumps(sorted(unit_allowed_syscalls()))]


def test_sandbox_is_real(sandbox_prefix):
    """The rebuilt sandbox does refuse what the unit refuses (else the test below proves nothing)."""
    setuid = subprocess.run([*sandbox_prefix, sys.executable, "-c", "import os; os.setuid(0)"],
                            capture_output=True, timeout=60)
    assert setuid.returncode == -signal.SIGSYS  # @privileged is not allowed: killed
    wx = subprocess.run([*sandbox_prefix, sys.executable, "-c",
                         "import mmap\ntry:\n mmap.mmap(-1, 4096, prot=7)\nexcept OSError as e:\n print(e.errno)"],
                        capture_output=True, text=True, timeout=60)
    assert wx.returncode == 0 and wx.stdout.strip() == str(errno.EPERM), wx


def run_sandboxed(prefix: list[str], cwd: Path, *args: str) -> str:
    result = subprocess.run([*prefix, str(DIRBRIDGE), *args, "--config", "dirbridge.toml"], cwd=cwd,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
    return result.stdout


def test_daemon_on_postgresql_works_inside_the_units_sandbox(tmp_path, sandbox_prefix, postgres_url, notify_socket):
    """CPython, psycopg's binary wheel (libpq), argon2-cffi, SQLAlchemy and waitress under
    the unit's system call filter and MemoryDenyWriteExecute: migrate, hash and verify a
    password, serve, notify, stop."""
    port = free_port()
    config = (f'data_dir = "data"\n[server]\nlisten = "127.0.0.1:{port}"\n'
              f'[database]\nurl = "{postgres_url}"\n'
              '[policy.password]\nhash_memory_kib = 8192\nhash_time_cost = 1\n')
    (tmp_path / "dirbridge.toml").write_text(config)
    assert "upgraded" in run_sandboxed(sandbox_prefix, tmp_path, "db", "upgrade")
    run_sandboxed(sandbox_prefix, tmp_path, "user", "create", "ops.admin", "--email", "ops@example.org",
                  "--access-type", "admin")
    password = run_sandboxed(sandbox_prefix, tmp_path, "user", "reset-password", "ops.admin").strip()
    token = run_sandboxed(sandbox_prefix, tmp_path, "token", "create", "portal", "--admin").strip()

    env = dict(os.environ, NOTIFY_SOCKET=notify_socket.env_value, WATCHDOG_USEC="1000000")
    proc = start_serve(tmp_path, config, env, argv_prefix=sandbox_prefix)
    try:
        notify_socket.wait_for("READY", timeout=30)
        notify_socket.wait_for("WATCHDOG", timeout=3)
        status = Path(f"/proc/{proc.pid}/status").read_text()  # the daemon itself is filtered
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M) and re.search(r"^Seccomp_filters:\s+2$", status, re.M)
        assert get(port, "/readyz") == 200
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/api/v1/auth/login", json.dumps({"username": "ops.admin", "password": password}),
                     {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = conn.getresponse()
        body = json.loads(response.read())
        conn.close()
        assert response.status == 200 and body["password_change_required"] is True, body
        proc.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING", timeout=10)
        assert proc.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()
    finally:
        stop(proc)


REAL_SECRET = "9f1c2e7a4b6d8e0f1a3c5e7b9d2f4a6c8e0b2d4f6a8c1e3b5d7f9a2c4e6b8d0f"


def test_a_credential_left_empty_by_tmpfiles_is_refused_by_name(tmp_path, monkeypatch):
    """tmpfiles creates every credential file empty; one the config names but nobody
    filled must not become an empty session key or password."""
    from bridge.config import ConfigError

    (tmp_path / "session-secret").write_text("")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        load_config_data({"status": {"session_secret_credential": "session-secret"}})
    assert caught.value.problems == [f"status.session_secret_credential: {tmp_path / 'session-secret'} is empty"]
    (tmp_path / "session-secret").write_text(REAL_SECRET + "\n")
    config = load_config_data({"status": {"session_secret_credential": "session-secret"}})
    assert config.status.session_secret is not None
    assert config.status.session_secret.get_secret_value() == REAL_SECRET
