"""LDAP sync benchmark: 100,000 users and 1,000 groups in a throwaway slapd.

Prints, in one run: OpenLDAP's ``ldapsearch`` (C, paged ``-E pr=500/noprompt``) of
every user and group (the floor), the raw paged search of the same entries with
python-ldap (libldap) and with ldap3, then for each reader (``--readers``, by default
libldap and ldap3) dirbridge's full sync into an empty store and a full sync with
nothing changed, an incremental sync with nothing changed and one with 100 changes,
and the peak RSS of this process (the writer) and of the reading process.
Targets (issue "Close to the floor"): an unchanged full sync within 4x ldapsearch,
one into an empty store within 8x; unchanged incremental under 1 s; every process
under 400 MB.

    .venv/bin/python bench/ldap_sync_bench.py [--users 100000] [--groups 1000] [--readers libldap,ldap3]
        [--store URL | --postgres] [--repeat N]

The directory is loaded offline with slapadd (minutes faster than ldapadd). Each
reader's rounds get a fresh SQLite file each, unless ``--store`` names a database (put
``{reader}`` in the URL for an empty one per reader, and ``{round}`` with ``--repeat``;
without them, later syncs find the store filled) or ``--postgres`` starts a throwaway
PostgreSQL 15 cluster (as tests/fixtures/postgres.py does) with an empty database per
reader and round.

A round (``--repeat N``, default 1): for one reader, a full sync into an empty store and
one with nothing changed, each divided by an ``ldapsearch`` measured beside them (the
first round by the one printed first; the machine's speed moves between runs).
The summary gives each round's ratios and, per reader, their median (for an even N,
the mean of the middle two), with the range of every floor measured. The incremental
syncs run once, after every round, on the last store.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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

#: set with --phases, which resets the kernel's peak at each mark and keeps the maximum itself
PHASES: Phases | None = None


def peak_mb() -> float:
    """This process's peak RSS (the writer)."""
    if PHASES is not None:
        PHASES.mark("peak asked")
        return PHASES.peak_mb
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_mb() -> float:
    """The largest peak RSS of the child processes waited for (the reading processes, and
    ldapsearch). Linux counts a child's memory at fork (the parent's) into it, so this can
    exceed what the child itself used: its own VmHWM is printed beside it."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Phases:
    """``--phases``: the writer's memory at each phase of a sync. Wraps the sync's phase
    methods; at each one's start and end it prints the current RSS and the peak since the
    previous mark (VmHWM, reset through /proc/self/clear_refs), so a peak is pinned to the
    phase that made it. With ``--trace N`` it also takes tracemalloc snapshots there and
    prints the N largest growths by line against the previous snapshot (slow: a few times
    the CPU, and tracemalloc's own memory counts in the RSS)."""

    PHASES = (("bridge.ldap.sync", "SourceSync", ("_sync", "_gone_in_full_scan", "_guard", "_remove")),
              ("bridge.ldap.groups", "GroupWriter", ("stored_groups", "upsert", "sync_members")))

    def __init__(self, trace: int = 0, trace_from: str = "", trim: bool = False):
        import ctypes
        import importlib

        #: --trim: glibc's malloc_trim after every batch, to tell freed memory kept by malloc from memory in use
        self.trim = ctypes.CDLL("libc.so.6").malloc_trim if trim else None
        self.trace = trace
        self.trace_from = trace_from  # tracing starts at the first sync whose label holds this
        self.snapshot: Any = None
        self.users_batches = 0
        #: the process's peak over every mark (resetting VmHWM resets RUSAGE_SELF's maxrss too)
        self.peak_mb = 0.0
        if trace and not trace_from:
            import tracemalloc
            tracemalloc.start(1)
        for module, cls_name, names in self.PHASES:
            cls = getattr(importlib.import_module(module), cls_name)
            for name in names:
                setattr(cls, name, self._wrap(f"{cls_name}.{name}", getattr(cls, name)))

    def _wrap(self, label: str, method: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.mark(f"{label} start")
            try:
                return method(*args, **kwargs)
            finally:
                self.mark(f"{label} end")
        return wrapped

    def progress(self, phase: str, n: int) -> None:
        if self.trim is not None:
            self.trim(0)
        if phase == "users":
            self.users_batches += 1
            if self.users_batches % (10 if self.trace else 100) == 0:
                self.mark(f"users: {self.users_batches} batches")

    def mark(self, label: str) -> None:
        import tracemalloc
        if self.trace and self.trace_from and self.trace_from in label and not tracemalloc.is_tracing():
            tracemalloc.start(1)
        tracing = self.trace and tracemalloc.is_tracing()
        rss, hwm = _status_kb("VmRSS") / 1024, _status_kb("VmHWM") / 1024
        self.peak_mb = max(self.peak_mb, hwm)
        line = f"    [phase] {label}: RSS {rss:.0f} MB, peak since the last mark {hwm:.0f} MB"
        if tracing:
            current, _ = tracemalloc.get_traced_memory()
            line += f", traced {current / 2**20:.0f} MB"
        print(line, flush=True)
        if tracing:
            snapshot = tracemalloc.take_snapshot()
            if self.snapshot is not None:
                for stat in snapshot.compare_to(self.snapshot, "lineno")[:self.trace]:
                    if abs(stat.size_diff) >= 1 << 20:
                        print(f"        {stat.size_diff / 2**20:+.1f} MB ({stat.size / 2**20:.1f} MB) "
                              f"{stat.traceback[0]}", flush=True)
            self.snapshot = snapshot
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")  # resets VmHWM to the current RSS


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
    # The tests' 256 MiB map holds about 200,000 of these users: size it for the run (sparse file).
    max_size = max(268435456, users * 4096)
    config = _config_ldif(workdir, ssha(ADMIN_PASSWORD)).replace("olcDbMaxSize: 268435456",
                                                                   f"olcDbMaxSize: {max_size}")
    config_path = workdir / "config.ldif"
    config_path.write_text(config, encoding="utf-8")
    _run([SLAPADD, "-n0", "-F", str(config_dir), "-l", str(config_path)])
    data = workdir / "data.ldif"
    write_ldif(data, users, groups)
    _run([SLAPADD, "-q", "-F", str(config_dir), "-b", BASE_DN, "-l", str(data)], timeout=1800)
    process = _SlapdProcess(workdir, config_dir, free_port())
    process.start(timeout=60)
    return process


def raw_search(url: str, attributes: list[str], group_attributes: list[str], page: int) -> tuple[int, float]:
    """ldap3's paged search of every user and group, entries counted and dropped."""
    start = time.perf_counter()
    conn = ldap3.Connection(ldap3.Server(url, get_info=ldap3.NONE), ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)
    count = 0
    for base, search_filter, attrs in ((USERS_BASE, "(objectClass=inetOrgPerson)", attributes),
                                       (GROUPS_BASE, "(objectClass=groupOfNames)", group_attributes)):
        for entry in conn.extend.standard.paged_search(base, search_filter, ldap3.SUBTREE,
                                                       attributes=attrs, paged_size=page, generator=True):
            if entry["type"] == "searchResEntry":
                count += 1
    conn.unbind()
    return count, time.perf_counter() - start


def raw_search_libldap(url: str, attributes: list[str], group_attributes: list[str],
                       page: int) -> tuple[int, float] | None:
    """python-ldap's (libldap's) paged search of the same entries; None without python-ldap."""
    try:
        import ldap
        from ldap.controls import SimplePagedResultsControl
    except ImportError:
        return None
    start = time.perf_counter()
    conn = ldap.initialize(url)
    conn.simple_bind_s(ADMIN_DN, ADMIN_PASSWORD)
    count = 0
    for base, search_filter, attrs in ((USERS_BASE, "(objectClass=inetOrgPerson)", attributes),
                                       (GROUPS_BASE, "(objectClass=groupOfNames)", group_attributes)):
        control = SimplePagedResultsControl(True, size=page, cookie=b"")
        while True:
            msgid = conn.search_ext(base, ldap.SCOPE_SUBTREE, search_filter, attrs, serverctrls=[control])
            _, entries, _, controls = conn.result3(msgid)
            count += sum(1 for dn, _ in entries if dn is not None)
            cookie = next((c.cookie for c in controls if c.controlType == control.controlType), b"")
            if not cookie:
                break
            control.cookie = cookie
    conn.unbind_ext_s()
    return count, time.perf_counter() - start


def ldapsearch(url: str, attributes: list[str], group_attributes: list[str]) -> tuple[int, float] | None:
    """OpenLDAP's C client, paged by 500 as an admin would run it, output thrown away
    (counted): the floor a full sync is measured against."""
    if shutil.which("ldapsearch") is None:
        return None
    start = time.perf_counter()
    count = 0
    for base, search_filter, attrs in ((USERS_BASE, "(objectClass=inetOrgPerson)", attributes),
                                       (GROUPS_BASE, "(objectClass=groupOfNames)", group_attributes)):
        argv = ["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD,
                "-b", base, "-E", "pr=500/noprompt", search_filter, *attrs]
        with subprocess.Popen(argv, stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(b"dn:"):
                    count += 1
        if proc.returncode:
            raise RuntimeError(f"ldapsearch exited with {proc.returncode}")
    return count, time.perf_counter() - start


@contextlib.contextmanager
def throwaway_postgres() -> Any:
    """A PostgreSQL 15 cluster of its own, as the tests start one (tests/fixtures/postgres.py)."""
    from tests.fixtures import postgres

    fixture = postgres.postgres_server
    function = getattr(fixture, "__wrapped__", None) or getattr(fixture, "_get_wrapped_function", lambda: fixture)()
    with contextlib.contextmanager(function)() as server:
        yield server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--write-batch", type=int, default=None,
                        help="the source's write_batch: entries per write transaction (default: its own, 5000)")
    parser.add_argument("--readers", default="libldap,ldap3",
                        help="the readers of the full syncs, in order (libldap, ldap3)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="N rounds per reader: each an ldapsearch, then a sync into a fresh empty store "
                             "and one with nothing changed; the summary gives each round's ratios and their "
                             "median")
    parser.add_argument("--no-incremental", action="store_true", help="skip the incremental syncs")
    parser.add_argument("--store", help="a database URL ({reader} in it: one per reader, {round} with --repeat: "
                                        "one per round; default: SQLite files)")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL 15 cluster as the store")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="write a cProfile of each sync to PREFIX-N.prof (slower: compare within one run)")
    parser.add_argument("--phases", action="store_true",
                        help="print the writer's RSS and its peak at each phase of each sync")
    parser.add_argument("--trace", type=int, default=0, metavar="N",
                        help="with --phases: tracemalloc's N largest growths at each phase (slow)")
    parser.add_argument("--trim", action="store_true",
                        help="with --phases: glibc's malloc_trim(0) after every batch (what malloc keeps)")
    parser.add_argument("--trace-from", default="", metavar="TEXT",
                        help="trace from the first sync whose label holds TEXT (\"nothing changed\")")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: at least 1")
    if args.store and args.repeat > 1 and "{round}" not in args.store:
        parser.error("--store with --repeat: put {round} in the URL (each round syncs into an empty store)")
    readers = [r.strip() for r in args.readers.split(",") if r.strip()]

    workdir = Path(tempfile.mkdtemp(prefix="dirbridge-bench-"))
    process = None
    try:
        with contextlib.ExitStack() as stack:
            pg = stack.enter_context(throwaway_postgres()) if args.postgres else None
            t0 = time.perf_counter()
            process = start_directory(workdir, args.users, args.groups)
            print(f"loaded {args.users} users and {args.groups} groups into slapd in {time.perf_counter() - t0:.1f} s")
            run(args, readers, workdir, process, pg)
    finally:
        if process is not None:
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def run(args: argparse.Namespace, readers: list[str], workdir: Path, process: _SlapdProcess, pg: Any) -> None:
    source = {
        "name": "bench", "url": process.url, "bind_dn": ADMIN_DN, "bind_password": ADMIN_PASSWORD,
        "users_base": USERS_BASE, "groups_base": GROUPS_BASE, "tls": {"mode": "none"},
        "page_size": args.page, "incremental_overlap": 5,
        **({"write_batch": args.write_batch} if args.write_batch else {}),
        "deletion_guard": {"max_percent": 10, "max_count": 50, "min_entries": 1},
    }
    amap = attribute_map(load_config_data({"ldap": {"sources": [source]}}).ldap.sources[0])
    attributes, group_attributes = amap.user_attributes(), amap.group_attributes()

    floor = ldapsearch(process.url, attributes, group_attributes)
    if floor is not None:
        print(f"ldapsearch (C) paged pr=500 of all users and groups: {floor[0]} entries in {floor[1]:.2f} s  [floor]")
    floors = [floor[1]] if floor is not None else []
    c_raw = raw_search_libldap(process.url, attributes, group_attributes, args.page)
    if c_raw is not None:
        print(f"raw python-ldap paged search of all users and groups: {c_raw[0]} entries in {c_raw[1]:.2f} s")
    if "ldap3" in readers:
        count, raw = raw_search(process.url, attributes, group_attributes, args.page)
        print(f"raw ldap3 paged search of all users and groups: {count} entries in {raw:.2f} s")

    global PHASES
    phases = PHASES = Phases(args.trace, args.trace_from, args.trim) if args.phases or args.trace else None
    runs = 0
    summary: list[str] = []
    ratios: dict[str, list[tuple[float, float]]] = {}
    store = None
    first_round_done = False  # the first round divides by the ldapsearch printed above
    for reader, round_ in ((reader, round_) for reader in readers for round_ in range(1, args.repeat + 1)):
        config = load_config_data({"ldap": {"sources": [{**source, "reader": reader}]},
                                   "logging": {"level": "warning"}})
        if pg is not None:
            url = pg.create_database(f"bench_{reader}_{round_}")
        elif args.store:
            url = args.store.replace("{reader}", reader).replace("{round}", str(round_))
        else:
            url = f"sqlite:///{workdir / f'store-{reader}-{round_}.sqlite3'}"
        if store is not None:
            store.dispose()
        store = Store(url)
        migrate.upgrade(store.engine)
        rt = build_runtime(config, store=store)
        if first_round_done and floor is not None:  # the floor again beside each round: the speed moves
            again = ldapsearch(process.url, attributes, group_attributes)
            assert again is not None
            floor = again
            floors.append(floor[1])
            print(f"[{reader}] round {round_}: ldapsearch (C) of the same entries: {floor[1]:.2f} s  [floor]")
        first_round_done = True

        def timed(label: str, rt: Any = rt, reader: str = reader, **kwargs: object) -> float:
            nonlocal runs
            runs += 1
            profiler = cProfile.Profile() if args.profile else None
            start, cpu = time.perf_counter(), time.process_time()
            if profiler is not None:
                profiler.enable()
            if phases is not None:
                phases.mark(f"{label}: start")
                kwargs["progress"] = phases.progress
            result = run_sync(rt, "bench", **kwargs)  # type: ignore[arg-type]
            if phases is not None:
                phases.mark(f"{label}: end")
            took, cpu = time.perf_counter() - start, time.process_time() - cpu
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(f"{args.profile}-{runs}.prof")
            c = result.counts
            child = ""
            if result.reader_peak_rss_kb is not None:
                child = (f"; reading process ({result.reader}): CPU {result.reader_cpu_seconds:.2f} s, "
                         f"peak RSS {result.reader_peak_rss_kb / 1024:.0f} MB (VmHWM), "
                         f"RUSAGE_CHILDREN maxrss {children_peak_mb():.0f} MB (slapadd included)")
            print(f"[{reader}] {label}: {took:.2f} s  [{result.mode} {result.status}: +{c.added} ~{c.updated} "
                  f"={c.unchanged} -{c.deactivated}, groups +{c.groups_added}, memberships "
                  f"+{c.memberships_added} -{c.memberships_removed}, scanned {c.scanned}]  CPU of this process "
                  f"{cpu:.2f} s, peak RSS {peak_mb():.0f} MB (RUSAGE_SELF){child}")
            if result.status not in ("ok", "approved"):
                print(f"  !! {result.error or result.guard}")
            return took

        empty = timed("full sync into an empty store", full=True)
        unchanged = timed("full sync, nothing changed", full=True)
        if floor is not None:
            ratios.setdefault(reader, []).append((empty / floor[1], unchanged / floor[1]))
            summary.append(f"[{reader}] round {round_}: full sync into an empty store / ldapsearch: "
                           f"{empty / floor[1]:.1f}x (target <= 8x); nothing changed / ldapsearch: "
                           f"{unchanged / floor[1]:.1f}x (target <= 4x)")
    for reader, each in ratios.items():
        if len(each) > 1:
            summary.append(f"[{reader}] median of {len(each)} rounds: into an empty store "
                           f"{statistics.median(e for e, _ in each):.1f}x (target <= 8x), nothing changed "
                           f"{statistics.median(u for _, u in each):.1f}x (target <= 4x); ldapsearch "
                           f"{min(floors):.2f}-{max(floors):.2f} s")

    assert store is not None
    if not args.no_incremental:
        time.sleep(5.5)  # past the overlap (incremental_overlap = 5 s), as a directory in use would be
        quiet = timed("incremental sync, nothing changed")
        conn = ldap3.Connection(ldap3.Server(process.url, get_info=ldap3.NONE), ADMIN_DN, ADMIN_PASSWORD,
                                auto_bind=True)
        step = max(1, args.users // 100)
        for i in range(0, min(args.users, 100 * step), step):
            conn.modify(f"uid=u{i:06d},{USERS_BASE}", {"mail": [(ldap3.MODIFY_REPLACE, [f"new{i}@example.org"])]})
        conn.unbind()
        timed("incremental sync, 100 changes")
        summary.append(f"unchanged incremental: {quiet:.2f} s (target < 1 s)")
    store.dispose()

    print()
    for line in summary:
        print(line)
    print(f"peak RSS of this process (the writer; slapd not included): {peak_mb():.0f} MB (target < 400 MB)")
    print(f"largest peak RSS of a child (RUSAGE_CHILDREN: the reading processes, ldapsearch, and slapadd): "
          f"{children_peak_mb():.0f} MB (target < 400 MB)")


if __name__ == "__main__":
    sys.exit(main())
