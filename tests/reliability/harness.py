"""Real processes for the reliability suite: ``dirbridge serve``, a private PostgreSQL
cluster that a test may stop and start, SCIM tokens and a small HTTP client."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fixtures import postgres as pgfix
from tests.fixtures.net import LOOPBACK, free_port, tail

REPO = Path(__file__).resolve().parents[2]
SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Http:
    """One keep-alive connection to 127.0.0.1:port (not thread-safe: one per thread)."""

    def __init__(self, port: int, token: str | None = None, timeout: float = 30.0):
        self.port, self.token, self.timeout = port, token, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> Response:
        sent = dict(headers or {})
        if self.token and "Authorization" not in sent:
            sent["Authorization"] = f"Bearer {self.token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            sent.setdefault("Content-Type", "application/scim+json")
        if self.conn is None:
            self.conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=data, headers=sent)
            reply = self.conn.getresponse()
            result = Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
        except BaseException:
            self.close()  # never sent again: the server may have acted on it
            raise
        if result.headers.get("connection", "").lower() == "close":
            self.close()
        return result

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def make_token(database_url: str, name: str, kind: str = "scim") -> str:
    """A bearer token of ``kind`` in the store at ``database_url`` (as `dirbridge token create`)."""
    from bridge.config import Config
    from bridge.services import Actor, Services
    from bridge.store import Store

    store = Store(database_url)
    try:
        with Services(store, Config()).unit(Actor(name="reliability")) as uow:
            return uow.tokens.create(name, kind)[1]
    finally:
        store.dispose()


@dataclass
class Daemon:
    """A `dirbridge serve` process; its output goes to ``directory/serve.log``."""

    proc: subprocess.Popen[bytes]
    port: int
    directory: Path
    config: Path

    def http(self, token: str | None = None, timeout: float = 30.0) -> Http:
        return Http(self.port, token, timeout)

    def log(self, lines: int = 60) -> str:
        return tail(self.directory / "serve.log", lines)

    def send(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        """Send ``signum`` and wait; SIGKILL after ``timeout``. Returns the exit status."""
        self.send(signum)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"dirbridge serve did not stop within {timeout}s after {signum}:\n{self.log()}") \
                from None


def write_config(directory: Path, database_url: str, port: int, extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "dirbridge.toml"
    path.write_text(f'data_dir = "data"\n[server]\nlisten = "127.0.0.1:{port}"\nshutdown_timeout = 30\n'
                    f'[database]\nurl = "{database_url}"\nauto_migrate = true\n'
                    f'[logging]\nlevel = "warning"\n{extra}')
    return path


def start_daemon(directory: Path, database_url: str, extra: str = "", ready_timeout: float = 40.0) -> Daemon:
    """`dirbridge serve` on a free loopback port, returned once /readyz answers 200."""
    port = free_port()
    config = write_config(directory, database_url, port, extra)
    exe = Path(sys.executable).parent / "dirbridge"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRBRIDGE_")}
    with (directory / "serve.log").open("ab") as log:
        proc = subprocess.Popen([str(exe), "serve", "--config", str(config)], cwd=directory, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    daemon = Daemon(proc, port, directory, config)
    deadline = time.monotonic() + ready_timeout
    client = daemon.http(timeout=2)
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"dirbridge serve exited {proc.returncode}:\n{daemon.log()}")
        try:
            if client.request("GET", "/readyz").status == 200:
                client.close()
                return daemon
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"dirbridge serve not ready after {ready_timeout}s:\n{daemon.log()}")
        time.sleep(0.1)


def run_cli(config: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "dirbridge"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRBRIDGE_")}
    return subprocess.run([str(exe), *args, "--config", str(config)], cwd=config.parent, env=env,
                          capture_output=True, text=True, timeout=timeout)


def new_user(user_name: str, **extra: Any) -> dict[str, Any]:
    return {"schemas": [SCIM_USER], "userName": user_name,
            "emails": [{"value": f"{user_name}@load.example", "primary": True}], **extra}


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


@dataclass
class PgCluster:
    """A PostgreSQL 15 cluster of its own, so a test may stop it (pg_ctl) and start it
    again on the same port without disturbing the session's shared server."""

    workdir: Path
    port: int = 0
    os_user: Any = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def create(cls) -> PgCluster:
        os_user = pgfix._server_os_user()
        workdir = Path(tempfile.mkdtemp(prefix="dirbridge-pg-", dir=pgfix._work_root()))
        if os_user is not None:
            os.chown(workdir, os_user.uid, os_user.gid)
        os.chmod(workdir, 0o700)
        cluster = cls(workdir, free_port(), os_user)
        (workdir / "sock").mkdir(mode=0o700)
        (workdir / "postgres.log").touch()
        if os_user is not None:
            for sub in ("sock", "postgres.log"):
                os.chown(workdir / sub, os_user.uid, os_user.gid)
        pgfix._run([str(pgfix.INITDB), "-D", str(workdir / "data"), "-U", pgfix.SUPERUSER, "-A", "trust",
                    "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"], os_user, workdir)
        # Durable commits, unlike the shared test server: a crash must not lose acknowledged writes.
        settings = dict(pgfix.SERVER_SETTINGS, synchronous_commit="on", fsync="on", port=str(cluster.port),
                        unix_socket_directories=f"'{workdir / 'sock'}'")
        (workdir / "data" / "postgresql.auto.conf").write_text(
            "\n".join(f"{k} = {v}" for k, v in settings.items()) + "\n")
        cluster.start()
        return cluster

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://{pgfix.SUPERUSER}@{LOOPBACK}:{self.port}/{dbname}?connect_timeout=3"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host=LOOPBACK, port=self.port, user=pgfix.SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def start(self) -> None:
        with open(self.workdir / "postgres.log", "ab") as log:
            self.proc = subprocess.Popen([str(pgfix.POSTGRES), "-D", str(self.workdir / "data")], cwd=self.workdir,
                                         env=pgfix._child_env(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, **pgfix._as_user(self.os_user))
        pgfix._wait_ready(self.proc, self.port, self.workdir / "postgres.log")

    def stop(self, mode: str = "immediate") -> None:
        """pg_ctl stop: ``immediate`` ends every backend at once (a crash, recovered at start)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pgfix._run([str(pgfix.PG_CTL), "stop", "-D", str(self.workdir / "data"), "-m", mode, "-w", "-t", "30"],
                   self.os_user, self.workdir, timeout=40)
        self.proc.wait(30)

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            pgfix._stop(self.proc, self.workdir / "data", self.os_user, self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)
