"""Where a SCIM write's time goes, in-process: statements per request and a profile.

    .venv/bin/python bench/scim_write_profile.py [--users 2000] [--database URL]
                                                 [--profile create|patch|service] [--top 40] [--echo]

Builds the runtime as `dirbridge serve` does (SQLite in a throwaway directory unless
--database), then, through the WSGI app's test client (the whole SCIM stack, no
socket), POSTs --users users and PATCHes as many (displayName and active, as
bench/scim_bench.py does), one client, one request at a time. Prints per request
kind the rate, the CPU time of this process per request (steadier than the rate on a
busy machine), the SQL statements per request (an event listener on the engine,
BEGIN/COMMIT included) and the same create through the service layer alone
(``uow.users.create``, as scim_bench.py's in-process baseline). ``--profile`` runs
cProfile (CPU time) over one of the three and prints the ``--top`` functions by cumulative
time, those of dirbridge's own code, and by own time;
``--echo`` prints the statements of one create and one PATCH.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class Statements:
    """Counts the statements an engine runs (and keeps their text while ``echo`` is on)."""

    def __init__(self, engine: Any):
        from sqlalchemy import event

        self.count = 0
        self.kinds: collections.Counter[str] = collections.Counter()
        self.echo = False
        self.seen: list[str] = []
        event.listen(engine, "before_cursor_execute", self._one)
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._commit)

    def _one(self, _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, many: bool) -> None:
        if statement.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE (bridge.store.db): counted by _begin
            return
        self.count += 1
        self.kinds[statement.split(None, 1)[0].upper()] += 1
        if self.echo:
            self.seen.append(("MANY " if many else "") + " ".join(statement.split())[:300])

    def _begin(self, _conn: Any) -> None:
        self.count += 1
        self.kinds["BEGIN"] += 1

    def _commit(self, _conn: Any) -> None:
        self.count += 1
        self.kinds["COMMIT"] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--database", help="SQLAlchemy URL (default: SQLite in a temp dir)")
    parser.add_argument("--profile", choices=["healthz", "create", "patch", "lookup", "get", "page", "service"])
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--dump", metavar="PATH", help="with --profile: also write the profile to PATH (for pstats, "
                        "snakeviz: callers and callees)")
    parser.add_argument("--echo", action="store_true")
    args = parser.parse_args()

    from bench.inprocess import scim_runtime
    from bridge.services import Actor
    from bridge.web import create_app

    rt, token = scim_runtime(args.database, "scim-write-")
    counter = Statements(rt.store.engine)
    client = create_app(rt).test_client()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}

    def body(i: int) -> dict[str, Any]:
        return {"schemas": [CORE], "userName": f"user{i}@example.com",
                "name": {"givenName": "Bench", "familyName": f"User {i}"},
                "emails": [{"value": f"user{i}@example.com", "type": "work", "primary": True}]}

    def post(i: int) -> str:
        response = client.post("/scim/v2/Users", data=json.dumps(body(i)), headers=headers)
        assert response.status_code == 201, response.get_data(as_text=True)
        return str(response.get_json()["id"])

    def patch(user_id: str, i: int) -> None:
        response = client.patch(f"/scim/v2/Users/{user_id}", headers=headers, data=json.dumps(
            {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": f"Patched {i}"},
                                                {"op": "replace", "path": "active", "value": i % 2 == 0}]}))
        assert response.status_code == 200, response.get_data(as_text=True)

    def healthz() -> None:
        assert client.get("/healthz").status_code == 200

    def lookup(i: int) -> None:
        response = client.get("/scim/v2/Users", headers=headers,
                              query_string={"filter": f'userName eq "user{i}@example.com"'})
        assert response.status_code == 200 and response.get_json()["totalResults"] == 1

    def get(user_id: str) -> None:
        assert client.get(f"/scim/v2/Users/{user_id}", headers=headers).status_code == 200

    def page(i: int) -> None:
        start = 1 + (i * 100) % max(1, args.users - 100)
        response = client.get("/scim/v2/Users", headers=headers, query_string={"startIndex": start, "count": 100})
        assert response.status_code == 200 and len(response.get_json()["Resources"]) == 100

    ids = [post(i) for i in range(20)]  # warm up: caches, the first statements compiled
    patch(ids[0], 1)

    if args.echo:
        for name, call in (("POST /Users", lambda: post(10**6)), ("PATCH /Users/{id}", lambda: patch(ids[1], 3))):
            counter.echo, counter.seen = True, []
            call()
            counter.echo = False
            print(f"-- {name}: {len(counter.seen)} statements (BEGIN/COMMIT not shown)")
            for text in counter.seen:
                print("  ", text)

    profiler = cProfile.Profile(time.process_time)  # CPU time: steadier on a busy machine

    def measured(name: str, work_items: list[Any], call: Any) -> None:
        counter.count, counter.kinds = 0, collections.Counter()
        if args.profile == name:
            profiler.enable()
        started, cpu = time.perf_counter(), time.process_time()
        for item in work_items:
            call(item)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        if args.profile == name:
            profiler.disable()
        n = len(work_items)
        kinds = ", ".join(f"{k} {v / n:.2f}" for k, v in counter.kinds.most_common())
        print(f"{name:<8} {n / elapsed:7.0f}/s  {elapsed / n * 1000:6.2f} ms  CPU {cpu / n * 1000:6.2f} ms  "
              f"{counter.count / n:5.2f} statements each ({kinds})", flush=True)

    base = 1000
    created: list[str] = []
    measured("create", list(range(base, base + args.users)), lambda i: created.append(post(i)))
    measured("patch", list(enumerate(created)), lambda pair: patch(pair[1], pair[0]))
    measured("healthz", list(range(args.users)), lambda _i: healthz())
    measured("lookup", list(range(base, base + args.users)), lookup)
    measured("get", created, get)
    measured("page", list(range(max(1, args.users // 20))), page)
    actor = Actor.scim_client("bench")

    def service_create(i: int) -> None:
        with rt.services.unit(actor) as uow:
            uow.users.create(user_name=f"inproc{i}@example.com", email=f"inproc{i}@example.com")
    measured("service", list(range(args.users)), service_create)

    if args.profile:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats("bridge/", args.top)  # this project's own steps
        stats.sort_stats("tottime").print_stats(args.top)
        if args.dump:
            stats.dump_stats(args.dump)


if __name__ == "__main__":
    main()
