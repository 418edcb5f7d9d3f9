"""The writer of a full LDAP sync alone: no slapd, no reading process.

Feeds ``run_sync`` the entries ``ldap_sync_bench.py`` loads into slapd (the same users
and groups, made here as the reader would hand them over) and prints, per run, the
wall time and the CPU time of this process: a full sync into an empty store, then
``--unchanged`` full syncs with nothing changed. The CPU time is what the writer
itself costs, far steadier than wall times on a shared machine; ``--profile PREFIX``
writes a cProfile of each run.

    .venv/bin/python bench/ldap_writer_bench.py [--users 100000] [--groups 1000] [--unchanged 2]
        [--store URL] [--profile PREFIX]
"""

from __future__ import annotations

import argparse
import cProfile
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bridge.config import load_config_data  # noqa: E402
from bridge.ldap import sync  # noqa: E402
from bridge.ldap.directory import GroupEntry, UserEntry  # noqa: E402
from bridge.runtime import build_runtime  # noqa: E402
from bridge.store import Store, migrate  # noqa: E402

USERS_BASE, GROUPS_BASE = "ou=people,dc=example,dc=org", "ou=groups,dc=example,dc=org"


def entries(users: int, groups: int) -> tuple[list[UserEntry], list[GroupEntry]]:
    """What the reader hands over for ldap_sync_bench.py's directory (entryCSNs rising)."""
    made = [UserEntry(str(uuid.uuid4()), f"uid=u{i:06d},{USERS_BASE}", f"u{i:06d}", f"User Number {i}",
                      f"Number{i}", "User", f"u{i:06d}@example.org", True,
                      {"department": f"D{i % 50}", "employeeNumber": str(i)},
                      f"20260101{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}.{i:06d}Z#000000#000#000000")
            for i in range(users)]
    per_group = max(1, users // groups)
    return made, [GroupEntry(str(uuid.uuid4()), f"cn=group{g:04d},{GROUPS_BASE}", f"group{g:04d}",
                             [made[i].dn for i in range(g * per_group, min(users, (g + 1) * per_group))])
                  for g in range(groups)]


class Feed:
    """A full scan's entries, as the reading process would send them."""

    server = "bench"

    def __init__(self, users: list[UserEntry], groups: list[GroupEntry]):
        self._users, self._groups = users, groups

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def users(self, since: str | None = None) -> Iterator[UserEntry]:
        yield from self._users

    def groups(self, since: str | None = None) -> Iterator[GroupEntry]:
        yield from self._groups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--unchanged", type=int, default=2, help="full syncs with nothing changed after the first")
    parser.add_argument("--store", help="a database URL (default: a SQLite file in a new temporary directory)")
    parser.add_argument("--profile", metavar="PREFIX", help="write a cProfile of each run to PREFIX-N.prof")
    args = parser.parse_args()

    users, groups = entries(args.users, args.groups)
    feed = Feed(users, groups)

    def read_ahead(self: Any) -> Feed:
        return feed

    sync.SourceSync._read_ahead = read_ahead  # type: ignore[method-assign]  # the entries come from here
    source = {"name": "bench", "url": "ldap://127.0.0.1:9", "bind_dn": "cn=admin", "bind_password": "unused",
              "users_base": USERS_BASE, "groups_base": GROUPS_BASE, "tls": {"mode": "none"}, "page_size": 1000,
              "deletion_guard": {"max_percent": 10, "max_count": 50, "min_entries": 1}}
    config = load_config_data({"ldap": {"sources": [source]}, "logging": {"level": "warning"}})
    store = Store(args.store or f"sqlite:///{tempfile.mkdtemp(prefix='dirbridge-writer-bench-')}/store.sqlite3")
    migrate.upgrade(store.engine)
    rt = build_runtime(config, store=store)
    labels = ["full sync into an empty store"] + ["full sync, nothing changed"] * args.unchanged
    for n, label in enumerate(labels, 1):
        profiler = cProfile.Profile() if args.profile else None
        start, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        result = sync.run_sync(rt, "bench", full=True)
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(f"{args.profile}-{n}.prof")
        c = result.counts
        print(f"{label}: {took:.2f} s, CPU {cpu:.2f} s  [{result.status}: +{c.added} ~{c.updated} ={c.unchanged}, "
              f"groups +{c.groups_added}, memberships +{c.memberships_added} -{c.memberships_removed}]", flush=True)
    store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
