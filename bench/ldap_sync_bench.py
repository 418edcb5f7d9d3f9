"""LDAP sync benchmark: 100,000 users and 1,000 groups in a throwaway slapd.

Prints, in one run: ldap3's raw paged search of all entries (the baseline),
dirbridge's full sync into an empty store, a full sync with nothing changed, an
incremental sync with nothing changed, one with 100 changes, and peak memory.
Targets: full sync within 2x of the raw search; unchanged incremental under 1 s;
peak memory under 400 MB.

    .venv/bin/python bench/ldap_sync_bench.py [--users 100000] [--groups 1000] [--store URL]

The directory is loaded offline with slapadd (minutes faster than ldapadd); the
store is a fresh SQLite file unless ``--store`` names another (empty) database.
"""

from __future__ import annotations

import argparse
import cProfile
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import ldap3

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bridge.config import load_config_data  # noqa: E402
from bridge.ldap.presets import attribute_map  # noqa: E402
from bridge.ldap.sync import run_sync  # noqa: E402
from bridge.runtime import build_runtime  # noqa: E402
from bridge.store import Store, migrate  # noqa: E402
from tests.fixtures.net import free_port  # noqa: E402
from tests.fixtures.slapd import (  # noqa: E402
    ADMIN_DN,
    ADMIN_PASSWORD,
    BASE_DN,
    GROUPS_BASE,
    SLAPADD,
    USERS_BASE,
    _config_ldif,
    _run,
    _SlapdProcess,
    ssha,
)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_ldif(path: Path, users: int, groups: int) -> None:
    per_group = max(1, users // groups)
    with path.open("w", encoding="utf-8") as out:
        out.write(f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n")
        out.write(f"dn: {USERS_BASE}\nobjectClass: organizationalUnit\nou: people\n\n")
        out.write(f"dn: {GROUPS_BASE}\nobjectClass: organizationalUnit\nou: groups\n\n")
        for i in range(users):
            out.write(f"dn: uid=u{i:06d},{USERS_BASE}\nobjectClass: inetOrgPerson\nuid: u{i:06d}\n"
                      f"cn: User {i}\nsn: User\ngivenName: Number{i}\ndisplayName: User Number {i}\n"
                      f"mail: u{i:06d}@example.org\nemployeeNumber: {i}\ndepartmentNumber: D{i % 50}\n\n")
        for g in range(groups):
            out.write(f"dn: cn=group{g:04d},{GROUPS_BASE}\nobjectClass: groupOfNames\ncn: group{g:04d}\n")
            for i in range(g * per_group, min(users, (g + 1) * per_group)):
                out.write(f"member: uid=u{i:06d},{USERS_BASE}\n")
            out.write("\n")


def start_directory(workdir: Path, users: int, groups: int) -> _SlapdProcess:
    config_dir = workdir / "slapd.d"
    for sub in (config_dir, workdir / "data", workdir / "accesslog"):
        sub.mkdir(mode=0o700)
    config = _config_ldif(workdir, ssha(ADMIN_PASSWORD))
    config_path = workdir / "config.ldif"
    config_path.write_text(config, encoding="utf-8")
    _run([SLAPADD, "-n0", "-F", str(config_dir), "-l", str(config_path)])
    data = workdir / "data.ldif"
    write_ldif(data, users, groups)
    _run([SLAPADD, "-q", "-F", str(config_dir), "-b", BASE_DN, "-l", str(data)], timeout=1800)
    process = _SlapdProcess(workdir, config_dir, free_port())
    process.start(timeout=60)
    return process


def raw_search(url: str, attributes: list[str], page: int) -> tuple[int, float]:
    """The baseline: ldap3's paged search of every user, entries counted and dropped."""
    start = time.perf_counter()
    conn = ldap3.Connection(ldap3.Server(url, get_info=ldap3.NONE), ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)
    count = 0
    for entry in conn.extend.standard.paged_search(USERS_BASE, "(objectClass=inetOrgPerson)", ldap3.SUBTREE,
                                                   attributes=attributes, paged_size=page, generator=True):
        if entry["type"] == "searchResEntry":
            count += 1
    conn.unbind()
    return count, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--store", help="an empty database URL (default: a fresh SQLite file)")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="write a cProfile of each sync to PREFIX-N.prof (slower: compare within one run)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="dirbridge-bench-"))
    process = None
    try:
        t0 = time.perf_counter()
        process = start_directory(workdir, args.users, args.groups)
        print(f"loaded {args.users} users and {args.groups} groups into slapd in {time.perf_counter() - t0:.1f} s")

        source = {
            "name": "bench", "url": process.url, "bind_dn": ADMIN_DN, "bind_password": ADMIN_PASSWORD,
            "users_base": USERS_BASE, "groups_base": GROUPS_BASE, "tls": {"mode": "none"},
            "page_size": args.page, "incremental_overlap": 5,
            "deletion_guard": {"max_percent": 10, "max_count": 50, "min_entries": 1},
        }
        config = load_config_data({"ldap": {"sources": [source]}, "logging": {"level": "warning"}})
        attributes = attribute_map(config.ldap.sources[0]).user_attributes()

        count, raw = raw_search(process.url, attributes, args.page)
        print(f"raw ldap3 paged search of all users: {count} entries in {raw:.2f} s "
              f"({count / raw:,.0f}/s)  [baseline]")

        url = args.store or f"sqlite:///{workdir / 'store.sqlite3'}"
        store = Store(url)
        migrate.upgrade(store.engine)
        rt = build_runtime(config, store=store)

        runs = 0
        reader_peaks: list[float] = []  # full scans read in a child process (bridge.ldap.readahead)

        def timed(label: str, **kwargs: object) -> float:
            nonlocal runs
            runs += 1
            profiler = cProfile.Profile() if args.profile else None
            start, cpu = time.perf_counter(), time.process_time()
            if profiler is not None:
                profiler.enable()
            result = run_sync(rt, "bench", **kwargs)
            took, cpu = time.perf_counter() - start, time.process_time() - cpu
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(f"{args.profile}-{runs}.prof")
            c = result.counts
            reader = ""
            if result.reader_peak_rss_kb is not None:
                reader_peaks.append(result.reader_peak_rss_kb / 1024)
                reader = (f"; reading process: CPU {result.reader_cpu_seconds:.2f} s, "
                          f"peak RSS {result.reader_peak_rss_kb / 1024:.0f} MB")
            print(f"{label}: {took:.2f} s  [{result.mode} {result.status}: +{c.added} ~{c.updated} "
                  f"={c.unchanged} -{c.deactivated}, groups +{c.groups_added}, memberships "
                  f"+{c.memberships_added} -{c.memberships_removed}, scanned {c.scanned}]  CPU of this process "
                  f"{cpu:.2f} s, peak RSS {peak_mb():.0f} MB{reader}")
            if result.status not in ("ok", "approved"):
                print(f"  !! {result.error or result.guard}")
            return took

        full = timed("full sync into an empty store", full=True)
        timed("full sync, nothing changed", full=True)
        time.sleep(5.5)  # past the overlap (incremental_overlap = 5 s), as a directory in use would be
        quiet = timed("incremental sync, nothing changed")

        conn = ldap3.Connection(ldap3.Server(process.url, get_info=ldap3.NONE), ADMIN_DN, ADMIN_PASSWORD,
                                auto_bind=True)
        step = max(1, args.users // 100)
        for i in range(0, min(args.users, 100 * step), step):
            conn.modify(f"uid=u{i:06d},{USERS_BASE}", {"mail": [(ldap3.MODIFY_REPLACE, [f"new{i}@example.org"])]})
        conn.unbind()
        timed("incremental sync, 100 changes")

        print()
        print(f"full sync / raw search: {full / raw:.2f}x (target <= 2x)")
        print(f"unchanged incremental: {quiet:.2f} s (target < 1 s)")
        print(f"peak memory (RSS of this process, slapd not included): {peak_mb():.0f} MB (target < 400 MB)")
        if reader_peaks:
            print(f"peak memory of the reading process of a full sync: {max(reader_peaks):.0f} MB "
                  f"(together with this process: {peak_mb() + max(reader_peaks):.0f} MB at most)")
        store.dispose()
    finally:
        if process is not None:
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
