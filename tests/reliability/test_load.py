"""50 concurrent SCIM clients against `dirbridge serve`, on SQLite and on PostgreSQL.

Each client creates, patches and deletes its own users, adds them to and removes them
from shared groups, races the others for case-variants of shared user names, and
increments shared counters with If-Match (retrying on 412). Every acknowledged write
goes into a client-side ledger; afterwards the ledger is checked against the database
and against SCIM GETs: nothing acknowledged may be missing, no user name may exist
twice (casefolded), and every counter equals its acknowledged increments.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from bridge.store import Store
from bridge.store.models import GroupUserMember, User
from tests.reliability.conftest import Report, load_seconds
from tests.reliability.harness import Http, make_token, new_user, patch, start_daemon

CLIENTS = 50
GROUPS = 4
COUNTERS = 3
SHARED_NAMES = 25
WEIGHTS = {"create": 26, "patch": 22, "join": 12, "leave": 8, "delete": 8, "increment": 16, "duplicate": 8}


@dataclass
class Ledger:
    """What one client was told succeeded (the server acknowledged it)."""

    created: dict[str, str] = field(default_factory=dict)  # id -> userName
    deleted: set[str] = field(default_factory=set)
    title: dict[str, str] = field(default_factory=dict)  # id -> last acknowledged title
    member: dict[tuple[str, str], bool] = field(default_factory=dict)  # (group, user) -> in it
    shared: dict[str, str] = field(default_factory=dict)  # id -> userName of a won shared-name race
    increments: Counter[str] = field(default_factory=Counter)
    retries_412: int = 0
    ops: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


class Client:
    """One SCIM client thread's work loop."""

    def __init__(self, index: int, port: int, token: str, run: str, groups: list[str], counters: list[str],
                 deadline: float):
        self.index, self.run, self.groups, self.counters, self.deadline = index, run, groups, counters, deadline
        self.http = Http(port, token, timeout=60)
        self.ledger = Ledger()
        self.alive: list[str] = []
        self.random = random.Random(f"{run}-{index}")
        self.serial = 0

    def call(self, kind: str, method: str, path: str, body=None, headers=None, ok=(200, 201, 204),  # type: ignore[no-untyped-def]
             expected=()):
        started = time.perf_counter()
        try:
            reply = self.http.request(method, path, body, headers)
        except OSError as exc:
            self.ledger.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            return None
        finally:
            self.ledger.latencies.append(time.perf_counter() - started)
            self.ledger.ops[kind] += 1
        if reply.status not in ok and reply.status not in expected:
            self.ledger.errors.append(f"{kind} {method} {path}: {reply.status} {reply.body[:200]!r}")
        return reply

    def loop(self) -> Ledger:
        kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
        while time.monotonic() < self.deadline:
            getattr(self, self.random.choices(kinds, weights)[0])()
        self.http.close()
        return self.ledger

    def create(self) -> None:
        self.serial += 1
        name = f"ld-{self.run}-c{self.index:02d}-u{self.serial:05d}"
        reply = self.call("create", "POST", "/scim/v2/Users", new_user(name, title="t0"))
        if reply is not None and reply.status == 201:
            user_id = reply.json()["id"]
            self.ledger.created[user_id] = name
            self.ledger.title[user_id] = "t0"
            self.alive.append(user_id)

    def patch(self) -> None:
        if not self.alive:
            return self.create()
        user_id = self.random.choice(self.alive)
        title = f"t{self.random.randrange(10**9)}"
        reply = self.call("patch", "PATCH", f"/scim/v2/Users/{user_id}",
                          patch({"op": "replace", "path": "title", "value": title}))
        if reply is not None and reply.status in (200, 204):
            self.ledger.title[user_id] = title

    def join(self, leave: bool = False) -> None:
        if not self.alive:
            return self.create()
        user_id, group_id = self.random.choice(self.alive), self.random.choice(self.groups)
        operation = ({"op": "remove", "path": f'members[value eq "{user_id}"]'} if leave else
                     {"op": "add", "path": "members", "value": [{"value": user_id}]})
        reply = self.call("leave" if leave else "join", "PATCH", f"/scim/v2/Groups/{group_id}", patch(operation))
        if reply is not None and reply.status in (200, 204):
            self.ledger.member[(group_id, user_id)] = not leave

    def leave(self) -> None:
        self.join(leave=True)

    def delete(self) -> None:
        if len(self.alive) < 3:
            return self.create()
        user_id = self.alive.pop(self.random.randrange(len(self.alive)))
        reply = self.call("delete", "DELETE", f"/scim/v2/Users/{user_id}")
        if reply is not None and reply.status == 204:
            self.ledger.deleted.add(user_id)
            self.ledger.title.pop(user_id, None)
            for key in [k for k in self.ledger.member if k[1] == user_id]:
                del self.ledger.member[key]
        else:
            self.alive.append(user_id)

    def duplicate(self) -> None:
        base = f"shared-{self.run}-{self.random.randrange(SHARED_NAMES):02d}"
        name = "".join(c.upper() if self.random.random() < 0.5 else c for c in base)
        reply = self.call("duplicate", "POST", "/scim/v2/Users", new_user(name), expected=(409,))
        if reply is not None and reply.status == 201:
            self.ledger.shared[reply.json()["id"]] = name

    def increment(self) -> None:
        counter = self.random.choice(self.counters)
        for _ in range(200):
            current = self.call("increment", "GET", f"/scim/v2/Users/{counter}")
            if current is None or current.status != 200:
                return
            value = int(current.json().get("title", "0"))
            reply = self.call("increment", "PATCH", f"/scim/v2/Users/{counter}",
                              patch({"op": "replace", "path": "title", "value": str(value + 1)}),
                              headers={"If-Match": current.headers["etag"]}, expected=(412,))
            if reply is None:
                return
            if reply.status in (200, 204):
                self.ledger.increments[counter] += 1
                return
            if reply.status != 412:
                return
            self.ledger.retries_412 += 1
        self.ledger.errors.append(f"increment of {counter}: still 412 after 200 tries")


def _verify(store: Store, http: Http, ledgers: list[Ledger], counters: list[str]) -> dict[str, int]:
    """Compare the ledgers with the database and with SCIM GETs; count what was checked/lost."""
    with store.read() as session:
        users = {u.id: u for u in session.scalars(select(User))}
        rows = set(tuple(r) for r in session.execute(select(GroupUserMember.group_id, GroupUserMember.user_id)
                                   .where(GroupUserMember.origin == "source")).all())
    checked = lost = 0
    problems: list[str] = []

    def expect(ok: bool, what: str) -> None:
        nonlocal checked, lost
        checked += 1
        if not ok:
            lost += 1
            problems.append(what)

    created: dict[str, str] = {}
    titles: dict[str, str] = {}
    members: dict[tuple[str, str], bool] = {}
    deleted: set[str] = set()
    increments: Counter[str] = Counter()
    for ledger in ledgers:
        created.update(ledger.created)
        created.update(ledger.shared)
        titles.update(ledger.title)
        members.update(ledger.member)
        deleted |= ledger.deleted
        increments.update(ledger.increments)
    for user_id, name in created.items():
        if user_id in deleted:
            expect(user_id not in users, f"deleted user {name} is still there")
            continue
        row = users.get(user_id)
        expect(row is not None and row.user_name == name, f"acknowledged create of {name} missing")
        if row is not None and user_id in titles:
            expect((row.attributes or {}).get("title") == titles[user_id],
                   f"{name}: title {(row.attributes or {}).get('title')!r}, acknowledged {titles[user_id]!r}")
    for (group_id, user_id), inside in members.items():
        expect(((group_id, user_id) in rows) == inside, f"membership {user_id} in {group_id}: expected {inside}")
    for counter in counters:
        title = (users[counter].attributes or {}).get("title")
        expect(title == str(increments[counter]), f"counter {counter}: {title} != {increments[counter]} increments")
    keys = Counter(u.user_name.casefold() for u in users.values())
    duplicates = [name for name, n in keys.items() if n > 1]
    expect(not duplicates, f"user names held twice: {duplicates[:5]}")
    expect(all(u.user_name_key == u.user_name.strip().casefold() for u in users.values()), "user_name_key drift")

    # The same facts through the SCIM API, as a client reads them.
    def scim_view(user_id: str) -> tuple[str, int, str | None]:
        reply = http_for_thread().request("GET", f"/scim/v2/Users/{user_id}")
        return user_id, reply.status, (reply.json() or {}).get("title") if reply.status == 200 else None

    local = threading.local()

    def http_for_thread() -> Http:
        if not hasattr(local, "http"):
            local.http = Http(http.port, http.token)
        return local.http

    with ThreadPoolExecutor(8) as pool:
        for user_id, status, title in pool.map(scim_view, list(created)):
            if user_id in deleted:
                expect(status == 404, f"GET of deleted {user_id}: {status}")
            else:
                expect(status == 200, f"GET of acknowledged {user_id}: {status}")
                if user_id in titles:
                    expect(title == titles[user_id], f"GET {user_id}: title {title!r} != {titles[user_id]!r}")
    assert not problems, f"{lost} of {checked} acknowledged facts lost: {problems[:20]}"
    return {"checked": checked, "lost": lost}


def test_fifty_clients_lose_no_acknowledged_write(db_url: str, tmp_path: Path, report: Report) -> None:
    backend = db_url.split(":", 1)[0].split("+")[0]
    daemon = start_daemon(tmp_path / "serve", db_url)
    token = make_token(db_url, "load", "scim")
    admin = Http(daemon.port, token)
    run = uuid.uuid4().hex[:6]
    try:
        groups = []
        for g in range(GROUPS):
            reply = admin.request("POST", "/scim/v2/Groups", {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": f"load-{run}-{g}"})
            assert reply.status == 201, reply.body
            groups.append(reply.json()["id"])
        counters = []
        for c in range(COUNTERS):
            reply = admin.request("POST", "/scim/v2/Users", new_user(f"counter-{run}-{c}", title="0"))
            assert reply.status == 201, reply.body
            counters.append(reply.json()["id"])

        seconds = load_seconds()
        started = time.monotonic()
        clients = [Client(i, daemon.port, token, run, groups, counters, started + seconds) for i in range(CLIENTS)]
        with ThreadPoolExecutor(CLIENTS) as pool:
            ledgers = list(pool.map(Client.loop, clients))
        elapsed = time.monotonic() - started

        store = Store(db_url)
        try:
            verified = _verify(store, admin, ledgers, counters)
        finally:
            store.dispose()
        assert daemon.proc.poll() is None, daemon.log()
    finally:
        admin.close()
        code = daemon.stop()
    latencies = sorted(x for ledger in ledgers for x in ledger.latencies)
    errors = [e for ledger in ledgers for e in ledger.errors]
    operations = sum(sum(ledger.ops.values()) for ledger in ledgers)
    ops = Counter[str]()
    for ledger in ledgers:
        ops.update(ledger.ops)
    figures = {
        "backend": backend, "clients": CLIENTS, "operations": operations, "minutes": round(elapsed / 60, 2),
        "errors": len(errors), "error_rate": f"{len(errors) / max(operations, 1):.4%}",
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1), "ops_per_second": round(operations / elapsed, 1),
        "by_kind": dict(ops), "increments": sum(sum(ledger.increments.values()) for ledger in ledgers),
        "precondition_retries": sum(ledger.retries_412 for ledger in ledgers),
    }
    report.add("load", **figures)
    report.add("acknowledged", what=f"load on {backend}", **verified)
    assert code == 0, daemon.log()
    assert not errors, f"{len(errors)} errors, first: {errors[:10]}"
    assert operations > CLIENTS * 5, figures
