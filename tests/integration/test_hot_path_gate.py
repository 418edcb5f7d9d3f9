"""The hot-path gates in the HTTP server (bridge.gate, bridge.web.server): SCIM requests
run ``server.hot_path_threads`` at a time, check requests as many under a gate of their
own, the rest beside them; a SCIM write that waits for SQLite's write lock does not hold
up the reads behind it, and a long SCIM request does not hold up the checks."""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bridge.config import load_config_data
from bridge.runtime import build_runtime
from bridge.services import Actor
from bridge.store import Store, migrate
from bridge.web import create_app
from bridge.web.server import HttpServer, hot_path_gates, hot_path_of

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


@contextmanager
def served(tmp_path: Path, slots: int, wrap: Any = None, threads: int = 8,
           config: dict[str, Any] | None = None) -> Iterator[tuple[Any, int, str]]:
    """A runtime on SQLite with a gate of ``slots``, served as `dirbridge serve` serves it
    (``threads`` per pool: SCIM, the check API, the rest)."""
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    migrate.upgrade(store.engine)
    rt = build_runtime(load_config_data({"data_dir": str(tmp_path), **(config or {})}), store=store)
    with rt.services.unit(Actor(name="test")) as uow:
        token = uow.tokens.create("entra", "scim")[1]
    app = create_app(rt)
    server = HttpServer(wrap(app) if wrap else app, host="127.0.0.1", port=0, threads=threads, max_connections=100,
                        idle_timeout=30, max_body_bytes=1 << 20, shutdown_timeout=5, ident="test",
                        gates=hot_path_gates(slots))
    server.start()
    try:
        yield rt, server.bound_port, token
    finally:
        server.stop()
        store.dispose()


def call(port: int, method: str, path: str, token: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, None if body is None else json.dumps(body),
                     {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"})
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        conn.close()


def user(name: str) -> dict[str, Any]:
    return {"schemas": [CORE], "userName": name}


def test_a_read_is_answered_while_a_write_waits_for_the_write_lock(tmp_path):
    """The write lock held elsewhere in the process (a sync batch, an admin request): the
    SCIM POST that waits for it lets go of the only slot, and a SCIM read goes through."""
    with served(tmp_path, slots=1) as (rt, port, token):
        assert call(port, "POST", "/scim/v2/Users", token, user("first@example.org"))[0] == 201
        posted: list[int] = []
        with rt.store.write():  # this thread (no slot) holds the process's write lock
            writer = threading.Thread(target=lambda: posted.append(
                call(port, "POST", "/scim/v2/Users", token, user("second@example.org"))[0]))
            writer.start()
            time.sleep(0.5)  # the POST is in, waiting for the lock
            started = time.monotonic()
            status, body = call(port, "GET", '/scim/v2/Users?filter=userName%20eq%20%22first@example.org%22',
                                token, timeout=10)
            waited = time.monotonic() - started
            assert status == 200 and body["totalResults"] == 1
            assert waited < 5
            assert posted == []  # still waiting: the read did not wait for it
        writer.join(timeout=30)
        assert posted == [201]


def test_a_read_is_answered_while_a_write_waits_for_another_process(tmp_path):
    """Another process (the CLI, here a connection of its own) holds SQLite's write lock:
    the SCIM POST waits out the busy timeout without the only slot, and a read goes through."""
    with served(tmp_path, slots=1) as (_rt, port, token):
        assert call(port, "POST", "/scim/v2/Users", token, user("first@example.org"))[0] == 201
        posted: list[int] = []
        other = sqlite3.connect(tmp_path / "store.sqlite3", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            writer = threading.Thread(target=lambda: posted.append(
                call(port, "POST", "/scim/v2/Users", token, user("second@example.org"))[0]))
            writer.start()
            time.sleep(0.5)  # the POST is in, waiting on SQLite
            started = time.monotonic()
            status, body = call(port, "GET", '/scim/v2/Users?filter=userName%20eq%20%22first@example.org%22',
                                token, timeout=10)
            waited = time.monotonic() - started
            assert posted == []  # still waiting
        finally:
            other.execute("ROLLBACK")
            other.close()
        writer.join(timeout=30)
    assert status == 200 and body["totalResults"] == 1
    assert waited < 2
    assert posted == [201]  # and written once the other process let go


def test_a_read_is_answered_while_a_write_checks_the_password_history(tmp_path):
    """A SCIM PATCH of a password checks it against the user's last ones (argon2, made
    costly here), inside its transaction: it does so without the only slot, and a read
    goes through meanwhile."""
    config = {"scim": {"clients": {"entra": {"passwords": True}}},
              "policy": {"password": {"history": 5, "hash_time_cost": 12, "hash_parallelism": 1}}}
    with served(tmp_path, slots=1, config=config) as (_rt, port, token):
        status, created = call(port, "POST", "/scim/v2/Users", token,
                               {**user("first@example.org"), "password": "Correct-Horse-Battery-0"})
        assert status == 201
        path = f"/scim/v2/Users/{created['id']}"

        def patch(n: int) -> int:
            return call(port, "PATCH", path, token, {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "password", "value": f"Correct-Horse-Battery-{n}"}]})[0]
        assert [patch(n) for n in (1, 2)] == [200, 200]
        started = time.monotonic()
        assert patch(3) == 200
        one_patch = time.monotonic() - started  # hashing ahead, then three hashes of the history checked
        patched: list[int] = []
        writer = threading.Thread(target=lambda: patched.append(patch(4)))
        writer.start()
        time.sleep(one_patch / 2)  # the PATCH is checking the history
        started = time.monotonic()
        status, body = call(port, "GET", '/scim/v2/Users?filter=userName%20eq%20%22first@example.org%22',
                            token, timeout=30)
        waited = time.monotonic() - started
        writer.join(timeout=60)
    assert status == 200 and body["totalResults"] == 1
    assert patched == [200]
    assert one_patch > 1.0  # costly enough that a read waiting for it would show
    assert waited < one_patch / 4


def counting(app: Any, inside: dict[str, int], slow_scim: float = 0.02) -> Any:
    """``app`` counting the requests inside it by kind, and the most at once of each."""
    lock = threading.Lock()

    def kind_of(path: str) -> str:
        scim = path == "/scim" or path.startswith("/scim/")  # the mount, as DispatcherMiddleware matches it
        return "scim" if scim else "check" if path.startswith("/api/v1/check") else "other"

    def wrapped(environ: Any, start_response: Any) -> Any:
        kind = kind_of(environ.get("SCRIPT_NAME", "") + environ["PATH_INFO"])
        with lock:
            inside[kind] = inside.get(kind, 0) + 1
            inside[f"{kind}_most"] = max(inside.get(f"{kind}_most", 0), inside[kind])
            if kind == "other" and inside.get("scim", 0):
                inside["other_during_scim"] = inside.get("other_during_scim", 0) + 1
        try:
            if kind == "scim":
                time.sleep(slow_scim)  # long enough for the others to pile up at the gate
            return app(environ, start_response)
        finally:
            with lock:
                inside[kind] -= 1
    return wrapped


@pytest.mark.parametrize("slots", [1, 2])
def test_hot_path_requests_run_slots_at_a_time_and_the_rest_beside_them(tmp_path, slots):
    inside: dict[str, int] = {}
    with served(tmp_path, slots=slots, wrap=lambda app: counting(app, inside)) as (_rt, port, token):
        # The token's first use writes its last_used_at, and a writer waiting for the write lock
        # gives its slot up: counted here, that would be a third request inside. Only reads follow.
        assert call(port, "GET", "/scim/v2/Users?count=1", token)[0] == 200
        inside.clear()

        def client(i: int) -> None:
            for _ in range(5):
                if i % 4 == 3:
                    assert call(port, "GET", "/healthz", token)[0] == 200
                else:
                    assert call(port, "GET", "/scim/v2/Users?count=1", token)[0] == 200
                    assert call(port, "POST", "/api/v1/check", token, {"user": "nobody", "right": "x",
                                                                          "scope": "instance"})[0] in (401, 403)

        clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=60)
    assert inside["scim_most"] == slots
    assert inside["check_most"] <= slots
    assert inside.get("other_during_scim", 0) > 0  # /healthz went through while SCIM's slot was taken


def test_a_long_scim_request_does_not_hold_up_the_checks(tmp_path):
    """A SCIM request that takes 2 s (a Bulk of a thousand operations, say) holds SCIM's one
    slot; the portal's checks have a gate of their own and are answered meanwhile."""
    inside: dict[str, int] = {}
    with served(tmp_path, slots=1, wrap=lambda app: counting(app, inside, slow_scim=2.0)) as (_rt, port, token):
        assert call(port, "GET", "/healthz", token)[0] == 200
        slow = threading.Thread(target=lambda: call(port, "GET", "/scim/v2/Users?count=1", token))
        slow.start()
        time.sleep(0.3)  # the SCIM request is inside, holding the slot
        started = time.monotonic()
        status = call(port, "POST", "/api/v1/check", token, {"user": "nobody", "right": "x", "scope": "instance"})[0]
        waited = time.monotonic() - started
        assert inside.get("scim") == 1  # still there
        slow.join(timeout=30)
    assert status in (401, 403)
    assert waited < 1.0


@pytest.mark.parametrize(("slots", "path"), [
    (0, "/scim/v2/Users?count=1"),
    (1, "/scim/v2/Users?count=1"),
    (1, "//scim/v2/Users?count=1"),  # an IdP whose base URL ends in a slash: PATH_INFO folds the slashes
    (1, "/scim?count=1"),  # SCIM's root query, at the mount itself
])
def test_a_scim_flood_does_not_hold_up_the_checks_or_the_health_check(tmp_path, slots, path):
    """Three times more slow SCIM requests at once than there are threads (an IdP's burst,
    a flood of unauthenticated requests): they queue in SCIM's own threads, gate or none,
    and the checks and /healthz are answered at once. With one pool for every path the
    flood held every thread (and with a gate, the requests waiting at it did), and a check
    waited for the SCIM requests ahead of it."""
    inside: dict[str, int] = {}
    with served(tmp_path, slots=slots, threads=2,
                wrap=lambda app: counting(app, inside, slow_scim=1.5)) as (_rt, port, token):
        flood = [threading.Thread(target=call, args=(port, "GET", path, "not-a-token")) for _ in range(6)]
        for thread in flood:
            thread.start()
        time.sleep(0.3)  # SCIM's threads are taken, the rest of the flood queued
        started = time.monotonic()
        check = call(port, "POST", "/api/v1/check", token, {"user": "nobody", "right": "x", "scope": "instance"})[0]
        check_waited = time.monotonic() - started
        started = time.monotonic()
        health = call(port, "GET", "/healthz", token)[0]
        health_waited = time.monotonic() - started
        scim_during = inside.get("scim", 0)
        for thread in flood:
            thread.join(timeout=30)
    assert scim_during == (slots or 2)  # the flood was inside meanwhile, a gate's worth or a pool's
    assert check in (401, 403) and health == 200
    assert check_waited < 1.0 and health_waited < 1.0


@pytest.mark.parametrize(("path", "hot"), [
    ("/scim/v2/Users", "/scim"), ("/scim", "/scim"), ("//scim/v2/Users", "/scim"), ("///scim", "/scim"),
    ("/api/v1/check", "/api/v1/check"), ("/api/v1/check/scopes", "/api/v1/check"), ("//api/v1/check", "/api/v1/check"),
    ("/scimx", None), ("/SCIM/v2/Users", None), ("/healthz", None), ("/api/v1/checks", None), ("", None),
    ("scim/v2/Users", None), ("/x//scim/v2", None),
])
def test_the_pool_and_the_gate_see_the_path_the_application_sees(path, hot):
    """Both are chosen by hot_path_of, on the path as waitress gives it to the application
    (leading slashes folded): a spelling that reaches SCIM or the check API is theirs."""
    assert hot_path_of(path) == hot


def test_a_client_that_pipelines_and_reads_nothing_holds_no_slot(tmp_path):
    """One connection pipelines pages of 1,000 users and never reads: waitress fills the
    connection's buffer and waits for it to drain. The gate covers the application's call,
    not that wait, so another client's SCIM request is answered (with the gate around
    waitress's whole task it timed out, past both 30 s timeouts)."""
    with served(tmp_path, slots=1) as (_rt, port, token):
        bulk = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": f"b{i}",
             "data": {"schemas": [CORE], "userName": f"user{i:05d}@example.org", "displayName": "D" * 200,
                      "name": {"givenName": "G" * 100, "familyName": "F" * 100}}}
            for i in range(1000)]}
        assert call(port, "POST", "/scim/v2/Bulk", token, bulk, timeout=300)[0] == 200
        attacker = socket.socket()
        attacker.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        attacker.connect(("127.0.0.1", port))
        one = f"GET /scim/v2/Users?count=1000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        attacker.sendall(one * (8000 // len(one)))  # some 60 answers of 0.5 MB, never read
        try:
            time.sleep(5)
            started = time.monotonic()
            status = call(port, "GET", "/scim/v2/Users?count=1", token, timeout=10)[0]
            waited = time.monotonic() - started
        finally:
            attacker.close()
    assert status == 200
    assert waited < 2


def test_a_check_waiting_for_the_write_lock_lets_the_other_checks_through(tmp_path):
    """A check whose token is used for the first time writes its last_used_at and waits for
    the write lock (held here by a job's thread for 3 s): it lets go of the check API's slot
    meanwhile, and a check with a token already seen is answered at once."""
    with served(tmp_path, slots=1) as (rt, port, _scim):
        with rt.services.unit(Actor(name="test")) as uow:
            seen = uow.tokens.create("portal", "admin")[1]
            fresh = uow.tokens.create("portal2", "admin")[1]
        ask = {"user": "nobody", "right": "x", "scope": "instance"}
        assert call(port, "POST", "/api/v1/check", seen, ask)[0] < 500  # its last_used_at is written now
        taken, done = threading.Event(), threading.Event()

        def hold() -> None:
            with rt.store.write() as session:
                session.execute(text("UPDATE api_tokens SET name = name WHERE 0"))
                taken.set()
                done.wait(10)
        holder = threading.Thread(target=hold)
        holder.start()
        assert taken.wait(5)
        first = threading.Thread(target=call, args=(port, "POST", "/api/v1/check", fresh, ask))
        first.start()
        time.sleep(0.3)  # the fresh token's check waits for the write lock
        started = time.monotonic()
        status = call(port, "POST", "/api/v1/check", seen, ask, timeout=10)[0]
        waited = time.monotonic() - started
        done.set()
        holder.join(timeout=10)
        first.join(timeout=30)
    assert status < 500
    assert waited < 1.0


def test_a_failed_bind_leaves_no_request_threads():
    """The address is taken: start() raises, and the pools it made for the requests are gone
    (24 threads per attempt were left behind)."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        before = threading.active_count()
        for _ in range(3):
            server = HttpServer(lambda environ, start_response: [], host="127.0.0.1", port=taken.getsockname()[1],
                                threads=8, max_connections=100, idle_timeout=30, max_body_bytes=1 << 20,
                                shutdown_timeout=5, ident="test", gates=hot_path_gates(1))
            with pytest.raises(OSError):
                server.start()
        deadline = time.monotonic() + 5
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= before
    finally:
        taken.close()
