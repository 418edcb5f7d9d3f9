"""SCIM ``userName eq`` lookups against a store that is already filled (1,000,000 users, say).

    .venv/bin/python bench/scim_lookup_bench.py --database URL [--lookups 3000] [--clients 8]

scim_bench.py fills its store through POST /Users, which takes hours at 1,000,000
users; this one serves a store filled some other way, e.g. the SQLite file the LDAP
bench leaves with ``--store`` (bench/ldap_sync_bench.py --users 1000000 --groups 10000
--store 'sqlite:////DIR/store-{reader}.sqlite3'). It starts `dirbridge serve` on that
database (scim_bench's Bench: keep-alive clients, and a token of a SCIM client named for the run),
samples --lookups userNames of the store's most numerous source, lets the client see
every user (``[[ownership.rules]]`` with ``may_take_over = ["*"]``: an IdP's probe finds
the users it may adopt; naming the LDAP source would need its ``[[ldap.sources]]``
entry, and the daemon would sync it) and measures, beside GET /healthz on the same
server:

- ``userName eq`` of an existing user (found, 1 result), in upper case (the filter
  matches case-insensitively), as an IdP probes;
- ``userName eq`` of a name nobody has (0 results);
- GET /Users/{id} of the sampled users.

The store gets the run's token and nothing else; the users are only read.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scim_bench import Bench, Client, line, run  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bridge.store import Store  # noqa: E402
from bridge.store.models import User  # noqa: E402


def sample(url: str, n: int, seed: int) -> tuple[str, int, list[tuple[str, str]]]:
    """The most numerous source, the store's user count, and ``n`` (userName, id) of that
    source's users, sampled uniformly in one streamed pass."""
    store = Store(url)
    try:
        with store.read() as session:
            source, _ = session.execute(select(User.source, func.count()).group_by(User.source)
                                        .order_by(func.count().desc()).limit(1)).one()
            total = session.scalar(select(func.count()).select_from(User)) or 0
            rng, picked = random.Random(seed), list[tuple[str, str]]()
            rows = session.execute(select(User.user_name, User.id).where(User.source == source,
                                                                        User.user_name.is_not(None))
                                   .execution_options(yield_per=10_000))
            for seen, (name, uid) in enumerate(rows):
                if len(picked) < n:
                    picked.append((name, uid))
                elif (at := rng.randrange(seen + 1)) < n:
                    picked[at] = (name, uid)
    finally:
        store.dispose()
    return source, total, picked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="SQLAlchemy URL of a filled, migrated store")
    parser.add_argument("--lookups", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    started = time.perf_counter()
    source, total, picked = sample(args.database, args.lookups, args.seed)
    print(f"store: {total} users; {len(picked)} userNames of {source} sampled in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    if not picked:
        print("no users to look up", file=sys.stderr)
        return 1

    work_dir = Path(tempfile.mkdtemp(prefix="scim-lookup-bench-"))
    client = f"lookup-bench-{work_dir.name.rsplit('-', 1)[-1]}"  # a token of its own each run (the store stays)
    bench = Bench(work_dir, args.clients, args.database, client=client)
    with bench.config.open("a", encoding="utf-8") as config:  # the client sees (may adopt) every user
        config.write(f'[[ownership.rules]]\nsource = "scim:{client}"\nmay_take_over = ["*"]\n')
    with bench.serving():
        clients = bench.clients
        print(f"dirbridge SCIM lookups: {total} users in the store, {args.clients} clients, "
              f"{args.database.split(':', 1)[0]}, {os.cpu_count()} CPUs", flush=True)
        floor = run(clients, list(range(5000)), lambda c, _: c.call("GET", "/healthz")[0])
        line("baseline: GET /healthz", floor, "(HTTP floor)")

        def lookup(c: Client, name: str, expected: int) -> int:
            query = urllib.parse.quote(f'userName eq "{name}"')
            status, body = c.call("GET", f"/scim/v2/Users?filter={query}")
            return status if body and body.get("totalResults") == expected else 599

        names = [name.upper() for name, _ in picked]
        found = run(clients, names, lambda c, name: lookup(c, name, 1))
        line(f"userName eq, found (at {total} users)", found, f"{found['rate'] / floor['rate']:5.1%} of /healthz")
        missing = run(clients, [f"nobody-{i}@nowhere.invalid" for i in range(len(names))],
                      lambda c, name: lookup(c, name, 0))
        line(f"userName eq, no such user (at {total} users)", missing,
             f"{missing['rate'] / floor['rate']:5.1%} of /healthz")
        ids = [uid for _, uid in picked]
        read = run(clients, ids, lambda c, uid: c.call("GET", f"/scim/v2/Users/{uid}")[0])
        line(f"GET /Users/{{id}} (at {total} users)", read, f"{read['rate'] / floor['rate']:5.1%} of /healthz")
        failed = found["errors"] + missing["errors"] + read["errors"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
