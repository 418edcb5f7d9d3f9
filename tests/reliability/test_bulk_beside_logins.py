"""A SCIM Bulk of creates with passwords beside logins, on a real ``dirbridge serve`` with
the embedded SQLite store and the default argon2 cost. Before, one Bulk of 170 held the
write lock for 52 s (every hash made inside one transaction) and a correct login failed
with 500 "database is locked" after 31 s. Now the passwords are hashed before the
transaction and each operation commits on its own (failOnErrors absent): logins go on.

The longest hold of the write lock is measured from outside: a probe connection asks
for the lock (BEGIN IMMEDIATE) again and again, and its longest wait is the longest hold
by the server. The figures go to the report."""

from __future__ import annotations

import http.client
import json
import sqlite3
import statistics
import threading
import time
from pathlib import Path

from tests.fixtures.app import run_cli
from tests.fixtures.net import free_port
from tests.integration.test_daemon import start_serve
from tests.reliability.conftest import Report

BULK = 40  # each create with a password: one default-cost hash (~0.3 s on these machines)
BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


def _call(port: int, method: str, path: str, body: object, token: str, timeout: float = 300):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, json.dumps(body), {"Authorization": f"Bearer {token}",
                                                      "Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_logins_go_on_while_a_bulk_with_passwords_runs(tmp_path: Path, report: Report):
    port = free_port()
    proc = start_serve(tmp_path, port, "workers = 8\n[scim.clients.idp]\npasswords = true\n")
    stop = threading.Event()
    waits: list[float] = []
    try:
        tokens = {}
        for name, extra in (("portal", ["--admin"]), ("idp", [])):
            made = run_cli("token", "create", name, *extra, "--config", "dirbridge.toml", cwd=tmp_path)
            assert made.returncode == 0, made.stderr
            tokens[name] = made.stdout.strip()
        status, body = _call(port, "POST", "/api/v1/users", {"user_name": "login.user",
                                                             "email": "l@example.org"}, tokens["portal"])
        user_id = json.loads(body)["id"]
        _, body = _call(port, "POST", f"/api/v1/users/{user_id}/password-reset", {}, tokens["portal"])
        password = json.loads(body)["temporary_password"]

        def probe() -> None:
            conn = sqlite3.connect(tmp_path / "data" / "dirbridge.sqlite3", timeout=120, isolation_level=None)
            while not stop.is_set():
                started = time.perf_counter()
                conn.execute("BEGIN IMMEDIATE")
                waits.append(time.perf_counter() - started)
                conn.execute("ROLLBACK")
                time.sleep(0.01)
            conn.close()

        bulk = {"schemas": [BULK_REQUEST], "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": f"b{i}",
             "data": {"schemas": [CORE], "userName": f"bulk.user{i:03d}", "password": f"Bulk-Pass-{i:03d}-Xy"}}
            for i in range(BULK)]}
        outcome: list[tuple[int, bytes]] = []
        sender = threading.Thread(target=lambda: outcome.append(_call(port, "POST", "/scim/v2/Bulk", bulk,
                                                                      tokens["idp"])))
        prober = threading.Thread(target=probe, daemon=True)
        started = time.perf_counter()
        prober.start()
        sender.start()
        logins: list[tuple[int, float]] = []
        time.sleep(0.5)
        while sender.is_alive():
            t0 = time.perf_counter()
            status, _ = _call(port, "POST", "/api/v1/auth/login", {"username": "login.user", "password": password,
                                                                   "client_ip": "192.0.2.1"}, tokens["portal"])
            logins.append((status, time.perf_counter() - t0))
            time.sleep(0.2)
        sender.join()
        bulk_seconds = time.perf_counter() - started
        stop.set()
        prober.join(5)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(timeout=30)
    status, body = outcome[0]
    statuses = [op["status"] for op in json.loads(body)["Operations"]]
    longest_hold = max(waits)
    report.add("bulk_beside_logins", bulk_operations=BULK, bulk_seconds=round(bulk_seconds, 1),
               logins=len(logins), logins_ok=sum(1 for s, _ in logins if s == 200),
               login_max_s=round(max(t for _, t in logins), 2),
               login_median_s=round(statistics.median(t for _, t in logins), 2),
               longest_write_lock_hold_s=round(longest_hold, 2))
    assert status == 200 and statuses == ["201"] * BULK, (status, statuses[:3])
    assert logins and all(s == 200 for s, _ in logins), logins
    assert longest_hold < 1.5, longest_hold
