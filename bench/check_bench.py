"""Benchmark of ``check``: the cached engine against the naive recursive evaluation.

Builds (by default) 100,000 users, 2,000 groups, 500 roles and 10,000 scope nodes,
then reports latency p50/p99 and throughput of:

- the engine in-process on a warm working set (the portal's steady state);
- the first check of a user (a cache miss: the user is read and compiled);
- the first check after a change (a membership or a grant, through the services)
  on this process, each compared with the naive answer;
- the naive recursive evaluation straight from the database (the baseline);
- POST /api/v1/check over HTTP (the server `dirbridge serve` runs, keep-alive), one check and
  bulks of 100 items, 1 and 4 clients, beside GET /healthz on the same server (the floor).

Usage:  .venv/bin/python bench/check_bench.py [--db URL | --postgres] [--users N] [--quick]

The data is written with bulk inserts (a benchmark fixture, not a write path:
with audit and rules per row it would take an hour); the changes measured
afterwards go through the services like any other write.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import insert, update  # noqa: E402

from bridge.config import Config, load_config_data  # noqa: E402
from bridge.mapping.engine import Authorizer  # noqa: E402
from bridge.mapping.naive import naive_check  # noqa: E402
from bridge.runtime import build_runtime  # noqa: E402
from bridge.services import Actor  # noqa: E402
from bridge.store import Store, migrate  # noqa: E402
from bridge.store.models import (  # noqa: E402
    AuthzState,
    Grant,
    Group,
    GroupGroupMember,
    GroupUserMember,
    Right,
    Role,
    RoleInclude,
    RoleRight,
    ScopeNode,
    User,
    UserRight,
    new_id,
)

CHUNK = 5000


def chunks(rows: list[dict], size: int = CHUNK) -> Iterator[list[dict]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def build(store: Store, rng: random.Random, users: int, groups: int, roles: int, nodes: int,
          rights: int) -> dict[str, list[str]]:
    """Bulk-load a world; returns the ids and names the bench samples from."""
    company_groups = max(1, nodes // 100)
    node_rows = [{"id": "instance", "level": "instance", "name": "instance", "parent_id": None, "origin": "builtin"}]
    node_rows += [{"id": f"company_group:cg{i}", "level": "company_group", "name": f"cg{i}",
                   "parent_id": "instance", "origin": "api"} for i in range(company_groups)]
    pools = [f"pool:p{i}" for i in range(nodes - 1 - company_groups)]
    node_rows += [{"id": p, "level": "pool", "name": p[5:], "parent_id": f"company_group:cg{i % company_groups}",
                   "origin": "api"} for i, p in enumerate(pools)]
    right_names = [f"area{i % 30}.action{i}" for i in range(rights)]
    role_ids = [new_id() for _ in range(roles)]
    role_rows = [{"id": rid, "name": f"role{i}", "origin": "api"} for i, rid in enumerate(role_ids)]
    role_right_rows = [{"role_id": rid, "right_name": r} for rid in role_ids
                       for r in rng.sample(right_names, rng.randint(5, 15))]
    include_rows = []
    for i, rid in enumerate(role_ids[1:], start=1):
        if rng.random() < 0.3:
            for j in rng.sample(range(i), min(i, rng.randint(1, 2))):
                include_rows.append({"role_id": rid, "included_role_id": role_ids[j]})
    group_ids = [new_id() for _ in range(groups)]
    managed_pools = rng.sample(pools, min(len(pools), groups // 10))
    group_rows = []
    for i, gid in enumerate(group_ids):
        name = f"pool-{managed_pools[i][5:]}-managers" if i < len(managed_pools) else f"group{i}"
        group_rows.append({"id": gid, "display_name": name, "display_name_key": name.casefold(),
                           "source": "scim:bench", "source_id": gid})
    nesting = [{"group_id": group_ids[rng.randrange(i)], "child_group_id": gid}
               for i, gid in enumerate(group_ids) if i and rng.random() < 0.1]
    all_nodes = [n["id"] for n in node_rows]
    group_grants = [{"role_id": rng.choice(role_ids), "scope_id": rng.choice(all_nodes), "group_id": gid,
                     "origin": "api"} for gid in group_ids for _ in range(rng.randint(1, 3))]
    user_ids = [new_id() for _ in range(users)]
    user_rows = [{"id": uid, "user_name": f"user{i:06d}", "user_name_key": f"user{i:06d}",
                  "access_type": "admin" if i % 100 == 0 else "backend", "source": "scim:bench", "source_id": uid}
                 for i, uid in enumerate(user_ids)]
    member_rows = [{"group_id": gid, "user_id": uid, "origin": "source"} for uid in user_ids
                   for gid in rng.sample(group_ids, rng.randint(1, 5))]
    user_grants = [{"role_id": rng.choice(role_ids), "scope_id": rng.choice(all_nodes), "user_id": uid,
                    "origin": "api"} for uid in user_ids if rng.random() < 0.2]
    user_rights = [{"user_id": uid, "right_name": rng.choice(right_names), "scope_id": rng.choice(all_nodes)}
                   for uid in user_ids if rng.random() < 0.05]
    with store.write() as session:
        for model, rows in [(ScopeNode, node_rows), (Right, [{"name": r} for r in right_names]), (Role, role_rows),
                            (RoleRight, role_right_rows), (RoleInclude, include_rows), (Group, group_rows),
                            (GroupGroupMember, nesting), (Grant, group_grants), (User, user_rows),
                            (GroupUserMember, member_rows), (Grant, user_grants), (UserRight, user_rights)]:
            for part in chunks(rows):
                session.execute(insert(model), part)
        session.execute(update(AuthzState).values(generation=AuthzState.generation + 1))
    print(f"built: {len(user_rows)} users, {len(group_rows)} groups ({len(nesting)} nested), {len(role_rows)} "
          f"roles ({len(include_rows)} includes), {len(node_rows)} scope nodes, {len(right_names)} rights, "
          f"{len(member_rows)} memberships, {len(group_grants) + len(user_grants)} grants, "
          f"{len(user_rights)} individual rights", flush=True)
    return {"users": user_ids, "groups": group_ids, "nodes": all_nodes, "rights": right_names,
            "roles": [r["name"] for r in role_rows]}


def timed(n: int, fn: Callable[[int], object]) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def report(label: str, samples: list[float], wall: float | None = None) -> None:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    per_second = len(samples) / (wall if wall is not None else sum(samples))
    print(f"{label:<44} n={len(samples):>6}  p50={p50:8.3f} ms  p99={p99:8.3f} ms  {per_second:>9.0f}/s",
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="SQLAlchemy URL of an EMPTY database (default: SQLite in a temp dir)")
    parser.add_argument("--postgres", action="store_true", help="on a throwaway PostgreSQL cluster (as the tests')")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--roles", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--rights", type=int, default=300)
    parser.add_argument("--working-set", type=int, default=5_000, help="users the warm phase checks")
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--http", type=int, default=3_000, help="HTTP requests (0: skip)")
    parser.add_argument("--quick", action="store_true", help="a tenth of everything")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.quick:
        for name in ("users", "groups", "roles", "nodes", "working_set", "checks", "http"):
            setattr(args, name, max(10, getattr(args, name) // 10))
    if args.postgres:
        from pg import postgres_database

        with postgres_database() as url:
            return run(args, url)
    return run(args, args.db)


def run(args: argparse.Namespace, db: str | None) -> int:
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="check-bench-"))
    url = db or f"sqlite:///{tmp / 'bench.sqlite3'}"
    store = Store(url)
    migrate.upgrade(store.engine)
    started = time.perf_counter()
    ids = build(store, rng, args.users, args.groups, args.roles, args.nodes, args.rights)
    print(f"build took {time.perf_counter() - started:.1f} s on {store.engine.dialect.name}", flush=True)
    config = load_config_data({"data_dir": str(tmp), "mapping": {"rules": [
        {"source": "scim", "group_regex": "^pool-(?P<pool>.+)-managers$", "role": "role0", "scope": "pool:{pool}"}]}})
    authz = Authorizer(store, config)

    def ask() -> tuple[str, str, str]:
        return rng.choice(working), rng.choice(ids["rights"]), rng.choice(ids["nodes"])

    start = time.perf_counter()
    authz.check(ids["users"][1], ids["rights"][0], "instance")
    print(f"model load (scope tree, roles, all groups): {(time.perf_counter() - start) * 1000:.0f} ms", flush=True)

    working = rng.sample(ids["users"], min(args.working_set, len(ids["users"])))
    report("engine: first check of a user (miss)", timed(len(working), lambda i: authz.check(
        working[i], rng.choice(ids["rights"]), rng.choice(ids["nodes"]))))
    queries = [ask() for _ in range(args.checks)]
    allowed = 0

    def warm(i: int) -> None:
        nonlocal allowed
        allowed += authz.check(*queries[i]).allowed

    report("engine: in-process, warm", timed(len(queries), warm))
    print(f"  ({allowed} of {len(queries)} allowed; cache {authz.cache.stats})", flush=True)
    explain_q = queries[:1000]
    report("engine: in-process, warm, with explain", timed(len(explain_q), lambda i: authz.check(
        *explain_q[i], explain=True)))

    # The first check after a change, each compared with the naive answer.
    services = build_runtime(config, store=store).services
    actor = Actor.scim_client("bench")
    wrong = 0
    after: list[float] = []
    for _ in range(200):
        who, right, node = ask()
        with services.unit(actor) as uow:
            if rng.random() < 0.5:
                uow.groups.change_members(uow.groups.get(rng.choice(ids["groups"])), add_users=[who])
            else:
                uow.grants.grant(rng.choice(ids["roles"]), node, user_id=who, origin="bench")
        start = time.perf_counter()
        answer = authz.check(who, right, node).allowed
        after.append(time.perf_counter() - start)
        with store.read() as session:
            wrong += answer != naive_check(session, authz.rules, who, right, node)
    report("engine: first check after a change", after)
    print(f"  wrong answers after a change: {wrong} of {len(after)}", flush=True)

    naive_q = queries[:2000]
    with store.read() as session:
        report("naive recursive evaluation (baseline)", timed(len(naive_q), lambda i: naive_check(
            session, authz.rules, *naive_q[i])))
    mismatches = 0
    with store.read() as session:
        for q in queries[:2000]:
            mismatches += authz.check(*q).allowed != naive_check(session, authz.rules, *q)
    print(f"  engine vs naive on 2000 checks: {mismatches} differ", flush=True)

    if args.http:
        http_bench(store, config, tmp, queries[:args.http])
    store.dispose()
    return 0 if wrong == 0 and mismatches == 0 else 1


def http_bench(store: Store, config: Config, tmp: Path, queries: list[tuple[str, str, str]]) -> None:
    """Over HTTP on the server ``dirbridge serve`` runs, beside its floor (GET /healthz on the
    same server) and the same work in-process: single checks, and bulk checks of 100 items."""
    from bridge.mapping.engine import CheckItem
    from bridge.web import create_app
    from bridge.web.server import HttpServer

    rt = build_runtime(config.model_copy(update={"data_dir": tmp}), store=store)
    with rt.services.unit(Actor(name="bench")) as uow:
        token = uow.tokens.create("bench-portal", "admin")[1]
    server = HttpServer(create_app(rt), host="127.0.0.1", port=0, threads=8, max_connections=200, idle_timeout=30,
                        max_body_bytes=1 << 22, shutdown_timeout=5, ident="dirbridge-bench")
    server.start()
    port = server.bound_port
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def run(bodies: list[str | None], out: list[float]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for body in bodies:
            start = time.perf_counter()
            if body is None:
                conn.request("GET", "/healthz")
            else:
                conn.request("POST", "/api/v1/check", body, headers)
            response = conn.getresponse()
            response.read()
            out.append(time.perf_counter() - start)
            assert response.status == 200, response.status
        conn.close()

    def measure(label: str, bodies: list[str | None], clients: int) -> None:
        samples: list[float] = []
        threads = [threading.Thread(target=run, args=(bodies[k::clients], samples)) for k in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        report(label, samples, time.perf_counter() - start)

    singles: list[str | None] = [json.dumps({"user": u, "right": r, "scope": s}) for u, r, s in queries]
    batches = [queries[i:i + 100] for i in range(0, len(queries) - 99, 100)]
    bulks: list[str | None] = [json.dumps({"items": [{"user": u, "right": r, "scope": s} for u, r, s in batch]})
                               for batch in batches]
    run(singles[:50], [])  # warm the authorizer of this app
    for clients in (1, 4):
        measure(f"HTTP GET /healthz (floor), {clients} client(s)", [None] * len(singles), clients)
        measure(f"HTTP POST /api/v1/check, {clients} client(s)", singles, clients)
    engine = rt.authorizer
    items = [[CheckItem(u, r, s) for u, r, s in batch] for batch in batches]
    report("in-process check_many, 100 items", timed(len(items), lambda i: engine.check_many(items[i])))
    for clients in (1, 4):
        measure(f"HTTP POST /api/v1/check, 100 items, {clients} client(s)", bulks * max(1, 300 // len(bulks)),
                clients)
    server.stop()


if __name__ == "__main__":
    sys.exit(main())
