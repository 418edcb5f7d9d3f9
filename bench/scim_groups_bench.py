"""What the User's ``groups`` attribute costs over HTTP, beside its baselines, in one run.

    .venv/bin/python bench/scim_groups_bench.py [--users 20000] [--groups 500] [--depth 4] [--clients 4]

Starts `dirbridge serve` on a free loopback port with a throwaway SQLite store
(or --database), fills it through the service layer in-process (users, each in
two groups; the groups nested --depth deep under one top group), then times
over keep-alive HTTP:

- pages of /Users (count=100) with their groups, direct and indirect,
  beside the same pages with ``excludedAttributes=groups`` (the page without
  the walk) and GET /healthz (the HTTP floor);
- ``groups.value eq TOP`` (every user, through the nesting) and ``eq`` a leaf
  group, 100 users a page, beside the plain page of 100 (the same rendering
  without the group filter) and ``userName eq`` (the indexed lookup IdPs probe
  with).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scim_bench import Bench, Client, line, run  # noqa: E402


def fill(config: Path, users: int, groups: int, depth: int) -> tuple[str, str]:
    """Users in nested groups, through the service layer; returns (top group id, a leaf group id)."""
    from bridge.config import load_config
    from bridge.runtime import build_runtime
    from bridge.services import Actor
    from bridge.services.groups import MemberDelta

    rt = build_runtime(load_config(config))
    actor = Actor.scim_client("bench")
    with rt.services.unit(actor) as uow:
        ids = uow.users.create_many([{"user_name": f"user{i:06}@example.com"} for i in range(users)])
        levels: list[list[str]] = [uow.groups.create_many([{"display_name": "top"}])]
        per_level = max(1, groups // depth)
        for level in range(1, depth + 1):
            levels.append(uow.groups.create_many([{"display_name": f"g{level}-{n}"} for n in range(per_level)]))
        for parent_level, children in zip(levels, levels[1:], strict=False):
            for n, child in enumerate(children):
                uow.groups.change_members(uow.groups.get(parent_level[n % len(parent_level)]), add_groups=[child])
        leaves = levels[-1]
        deltas: dict[str, MemberDelta] = {}
        for n, user_id in enumerate(ids):
            for leaf in (leaves[n % len(leaves)], leaves[(n * 7 + 3) % len(leaves)]):
                deltas.setdefault(leaf, MemberDelta(leaf)).add_users.add(user_id)
        uow.groups.change_members_many(list(deltas.values()))
        return levels[0][0], leaves[0]


def add_chain(config: Path, length: int) -> None:
    """Another client's chain of ``length`` groups, each nested in the next and none with a
    user: what a hostile IdP can build. It must not slow reads of anybody else's users."""
    from bridge.config import load_config
    from bridge.runtime import build_runtime
    from bridge.services import Actor

    rt = build_runtime(load_config(config))
    with rt.services.unit(Actor.scim_client("chain")) as uow:
        ids = uow.groups.create_many([{"display_name": f"chain{n}"} for n in range(length)])
        for child, parent in zip(ids, ids[1:], strict=False):
            uow.groups.change_members(uow.groups.get(parent), add_groups=[child])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--chain", type=int, default=1500, help="length of another client's chain of groups")
    parser.add_argument("--database", help="SQLAlchemy URL (default: SQLite in a temp dir)")
    args = parser.parse_args()

    bench = Bench(Path(tempfile.mkdtemp(prefix="scim-groups-bench-")), args.clients, args.database)
    top, leaf = fill(bench.config, args.users, args.groups, args.depth)
    with bench.serving():
        clients = bench.clients
        print(f"dirbridge SCIM groups bench: {args.users} users in 2 groups each, {args.groups} groups nested "
              f"{args.depth} deep, {args.clients} clients, {'PostgreSQL' if args.database else 'SQLite'}, "
              f"{os.cpu_count()} CPUs")
        floor = run(clients, list(range(3000)), lambda c, _: c.call("GET", "/healthz")[0])
        line("baseline: GET /healthz", floor, "(HTTP floor)")

        starts = [1 + (i * 100) % args.users for i in range(300)]

        def page(query: str) -> Any:
            def call(c: Client, start: int) -> int:
                status, body = c.call("GET", f"/scim/v2/Users?startIndex={start}&count=100{query}")
                return status if body and len(body["Resources"]) else 599
            return call

        bare = run(clients, starts, page("&excludedAttributes=groups"))
        line("baseline: page of 100, no groups", bare)
        with_groups = run(clients, starts, page(""))
        line("page of 100 with groups", with_groups, f"(x{with_groups['p50'] / bare['p50']:.2f} p50 vs no groups)")
        status, body = clients[0].call("GET", "/scim/v2/Users?count=1")
        kinds = sorted({g["type"] for g in body["Resources"][0].get("groups", [])})
        print(f"  (a user shows {len(body['Resources'][0].get('groups', []))} groups: {', '.join(kinds)})")

        def lookup(c: Client, i: int) -> int:
            status, body = c.call("GET", f'/scim/v2/Users?filter=userName%20eq%20%22user{i:06}@example.com%22')
            return status if body and body.get("totalResults") == 1 else 599

        probe = run(clients, [(i * 7919) % args.users for i in range(1000)], lookup)
        line("baseline: userName eq lookup", probe)

        def members_of(group: str) -> Any:
            def call(c: Client, _: int) -> int:
                status, body = c.call("GET", f'/scim/v2/Users?filter=groups.value%20eq%20%22{group}%22'
                                             "&count=100&excludedAttributes=groups")
                return status if body and body.get("totalResults") else 599
            return call

        leaf_members = run(clients, list(range(300)), members_of(leaf))
        line("groups.value eq LEAF (count=100)", leaf_members,
             f"(x{leaf_members['p50'] / bare['p50']:.2f} p50 vs a page of 100 without groups)")
        top_members = run(clients, list(range(100)), members_of(top))
        line(f"groups.value eq TOP ({args.users} match, count=100)", top_members,
             f"(x{top_members['p50'] / bare['p50']:.2f} p50 vs a page of 100 without groups)")

        ids = [r["id"] for r in clients[0].call("GET", "/scim/v2/Users?count=200&attributes=id")[1]["Resources"]]

        def one_user(c: Client, i: int) -> int:
            return c.call("GET", f"/scim/v2/Users/{ids[i % len(ids)]}")[0]

        before = run(clients, list(range(1000)), one_user)
        line("GET /Users/{id} with groups", before)
    if args.chain:
        add_chain(bench.config, args.chain)
        with bench.serving():
            after = run(bench.clients, list(range(1000)), one_user)
            line(f"  the same after a {args.chain}-group chain", after,
                 f"(x{after['p50'] / before['p50']:.2f} p50 vs before the chain)")
            page_after = run(bench.clients, starts, page(""))
            line("  page of 100 with groups, after it", page_after,
                 f"(x{page_after['p50'] / with_groups['p50']:.2f} p50 vs before the chain)")


if __name__ == "__main__":
    main()
