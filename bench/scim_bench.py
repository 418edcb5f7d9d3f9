"""SCIM throughput and latency of `dirbridge serve`, beside its baselines, in one run.

    .venv/bin/python bench/scim_bench.py [--users 100000] [--clients 8] [--database URL | --postgres]
                                         [--hot-path-threads N]
                                         [--no-fast-path | --compare]

Starts `dirbridge serve` on a free loopback port with a throwaway data dir
(SQLite unless --database, or --postgres: a throwaway PostgreSQL 15 cluster as the
tests start theirs, with empty databases for each run), makes a SCIM token, then over HTTP with
keep-alive connections from --clients threads:

- creates --users users (POST /Users),
- looks users up by `userName eq` (the IdP's probe) at 1,000 users and again
  at the end, so that lookup cost can be compared across store sizes,
- reads users by id (GET /Users/{id}),
- PATCHes users (replace displayName and active),
- pages through /Users (count=100).

The server answers with its SCIM hot path (bridge.scim.fast) unless --no-fast-path
(``scim.fast_path = false``: scim2-server serves every request); --compare runs the
whole bench both ways, each on a server and store of its own, and prints the figures
side by side. The server runs this checkout's code (PYTHONPATH), whatever dirbridge
the virtualenv installed.

Baselines printed beside each figure: GET /healthz on the same server (the
HTTP floor: server, WSGI, Flask) and the same operation through the service
layer in-process (the store's own cost, no HTTP or SCIM).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.net import free_port, wait_for_port  # noqa: E402

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, port: int, token: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request; a keep-alive connection the server closed while idle (cheroot's
        timeout) is reopened once, as any HTTP client does."""
        payload = None if body is None else json.dumps(body)
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=payload, headers=self.headers)
                response = self.conn.getresponse()
                data = response.read()
                return response.status, (json.loads(data) if data else None)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(clients: list[Client], jobs: list[Any], work: Callable[[Client, Any], int],
        server: int | None = None) -> dict[str, float]:
    """Spread ``jobs`` over the clients; the latencies (ms), rate and errors, and with the
    ``server``'s pid the CPU time it spent per request (ms): what the request costs the
    server, whatever the clients on the same machine take."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    chunks = [jobs[i::len(clients)] for i in range(len(clients))]

    def worker(client: Client, chunk: list[Any]) -> None:
        nonlocal errors
        mine, bad = [], 0
        for job in chunk:
            started = time.perf_counter()
            try:
                status = work(client, job)
            except OSError:  # a request that got no answer counts as an error, not as a hole
                status = 599
            mine.append((time.perf_counter() - started) * 1000)
            bad += status >= 400
        with lock:
            latencies.extend(mine)
            errors += bad

    started, cpu = time.perf_counter(), cpu_seconds(server) if server else 0.0
    threads = [threading.Thread(target=worker, args=(c, ch)) for c, ch in zip(clients, chunks, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    result = {"n": len(jobs), "rate": len(jobs) / elapsed, "p50": statistics.median(latencies),
              "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], "errors": errors}
    if server:
        result["cpu"] = (cpu_seconds(server) - cpu) / len(jobs) * 1000
    return result


def line(name: str, result: dict[str, float], baseline: str = "") -> None:
    cpu = f"   server CPU {result['cpu']:5.2f} ms" if "cpu" in result else ""
    print(f"  {name:<34} {result['rate']:>8.0f} req/s   p50 {result['p50']:6.2f} ms   p99 {result['p99']:7.2f} ms"
          f"   errors {int(result['errors'])}{cpu}   {baseline}", flush=True)


class Bench:
    """A throwaway `dirbridge serve` on a free loopback port, with a SCIM token and clients."""

    def __init__(self, work_dir: Path, clients: int, database: str | None, fast_path: bool = True,
                 client: str = "bench", hot_path_threads: int | None = None):
        self.port = free_port()
        self.config = work_dir / "dirbridge.toml"
        db = f'[database]\nurl = "{database}"\nauto_migrate = true\n' if database else ""
        self.config.write_text(f'data_dir = "{work_dir / "data"}"\n[server]\nlisten = "127.0.0.1:{self.port}"\n'
                               f'workers = {clients * 2}\n'
                               + ("" if hot_path_threads is None else f"hot_path_threads = {hot_path_threads}\n")
                               + '[logging]\nlevel = "warning"\n'
                               f'[scim]\nfast_path = {str(fast_path).lower()}\n{db}')
        self.exe = Path(os.environ.get("DIRBRIDGE_EXE") or Path(sys.executable).parent / "dirbridge")
        # This checkout's bridge package first, also where the virtualenv installed another one.
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.token = subprocess.run([str(self.exe), "token", "create", client, "--config", str(self.config)],
                                    capture_output=True, text=True, check=True, env=self.env).stdout.strip()
        self.size = clients
        self.clients: list[Client] = []
        self.pid: int | None = None

    @contextmanager
    def serving(self) -> Iterator[None]:
        server = subprocess.Popen([str(self.exe), "serve", "--config", str(self.config)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env)
        self.pid = server.pid
        try:
            wait_for_port("127.0.0.1", self.port, timeout=30)
            self.clients = [Client(self.port, self.token) for _ in range(self.size)]
            yield
        finally:
            server.terminate()
            server.wait(timeout=60)


def in_process(data_dir: Path, database: str | None, users: int) -> dict[str, float]:
    """The same create and lookup through the service layer, no HTTP: the store's own cost."""
    from bridge.config import load_config_data
    from bridge.runtime import build_runtime
    from bridge.services import Actor

    tables: dict[str, Any] = {"data_dir": str(data_dir / "inproc")}
    if database:
        tables["database"] = {"url": database + "_inproc" if "postgresql" in database else database,
                              "auto_migrate": True}
    rt = build_runtime(load_config_data(tables))
    actor = Actor.scim_client("bench")
    started = time.perf_counter()
    for i in range(users):
        with rt.services.unit(actor) as uow:
            uow.users.create(user_name=f"inproc{i}@example.com", email=f"inproc{i}@example.com")
    create_rate = users / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(0, users, max(1, users // 1000)):
        with rt.services.unit(actor) as uow:
            uow.users.find_by_user_name(f"inproc{i}@example.com")
    lookups = len(range(0, users, max(1, users // 1000)))
    return {"create": create_rate, "lookup": lookups / (time.perf_counter() - started)}


def measure(args: argparse.Namespace, fast_path: bool) -> dict[str, dict[str, float]]:
    """The bench on a server of its own; each figure printed as it comes, and returned."""
    work_dir = Path(tempfile.mkdtemp(prefix="scim-bench-"))
    bench = Bench(work_dir, args.clients, args.database, fast_path, hot_path_threads=args.hot_path_threads)
    results: dict[str, dict[str, float]] = {}
    with bench.serving():
        clients = bench.clients

        def timed(jobs: list[Any], work: Callable[[Client, Any], int]) -> dict[str, float]:
            return run(clients, jobs, work, bench.pid)
        mode = "hot path (bridge.scim.fast)" if fast_path else "scim2-server for every request (--no-fast-path)"
        print(f"dirbridge SCIM bench: {args.users} users, {args.clients} clients, "
              f"{'PostgreSQL' if args.database else 'SQLite'}, {os.cpu_count()} CPUs, {mode}")

        floor = timed(list(range(5000)), lambda c, _: c.call("GET", "/healthz")[0])
        line("baseline: GET /healthz", floor, "(HTTP floor)")
        results["healthz"] = floor

        def create(c: Client, i: int) -> int:
            return c.call("POST", "/scim/v2/Users", {"schemas": [CORE], "userName": f"user{i}@example.com",
                                                     "name": {"givenName": "Bench", "familyName": f"User {i}"},
                                                     "emails": [{"value": f"user{i}@example.com", "type": "work",
                                                                 "primary": True}]})[0]

        def lookup(c: Client, i: int) -> int:
            status, body = c.call("GET", f'/scim/v2/Users?filter=userName%20eq%20%22USER{i}@example.com%22')
            return status if body and body.get("totalResults") == 1 else 599

        small = min(1000, args.users)
        first = timed(list(range(small)), create)
        lookup_small = timed([i % small for i in range(3000)], lookup)
        created = first
        if args.users > small:
            rest = timed(list(range(small, args.users)), create)
            created = {"n": first["n"] + rest["n"],
                       "rate": (first["n"] + rest["n"]) / (first["n"] / first["rate"] + rest["n"] / rest["rate"]),
                       "p50": rest["p50"], "p99": rest["p99"], "errors": first["errors"] + rest["errors"],
                       "cpu": (first["cpu"] * first["n"] + rest["cpu"] * rest["n"]) / (first["n"] + rest["n"])}
        ids: list[str] = []
        status, body = clients[0].call("GET", "/scim/v2/Users?count=1000&attributes=id")
        ids = [r["id"] for r in body["Resources"]]

        lookup_big = timed([(i * 7919) % args.users for i in range(3000)], lookup)
        read = timed(list(range(3000)), lambda c, i: c.call("GET", f"/scim/v2/Users/{ids[i % len(ids)]}")[0])

        def patch(c: Client, i: int) -> int:
            return c.call("PATCH", f"/scim/v2/Users/{ids[i % len(ids)]}", {"schemas": [PATCH], "Operations": [
                {"op": "replace", "path": "displayName", "value": f"Patched {i}"},
                {"op": "replace", "path": "active", "value": i % 2 == 0}]})[0]

        patched = timed(list(range(3000)), patch)
        pages = max(1, min(200, args.users // 100))
        listed = timed([1 + (i * 100) % args.users for i in range(pages * 5)],
                     lambda c, start: c.call("GET", f"/scim/v2/Users?startIndex={start}&count=100")[0])

        print("SCIM over HTTP (dirbridge serve):")
        figures = [
            ("post", f"POST /Users ({created['n']} users)", created, ""),
            ("lookup_small", f"userName eq lookup at {small} users", lookup_small, ""),
            ("lookup_big", f"userName eq lookup at {args.users} users", lookup_big,
             f"(x{lookup_big['p50'] / lookup_small['p50']:.2f} p50 vs {small})"),
            ("get", "GET /Users/{id}", read, ""),
            ("patch", "PATCH /Users/{id}", patched, ""),
            ("list", "GET /Users?count=100 (paged list)", listed, ""),
        ]
        for key, name, result, note in figures:
            line(name, result, f"{result['rate'] / floor['rate']:5.1%} of /healthz {note}")
            results[key] = result
    baseline = in_process(work_dir, args.database, min(args.users, 5000))
    print("baseline: the service layer in-process, no HTTP/SCIM:")
    print(f"  create {baseline['create']:.0f} users/s, lookup by userName {baseline['lookup']:.0f}/s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--hot-path-threads", type=int, metavar="N",
                        help="the server's server.hot_path_threads (default: its own, 0: no gate; 1, 2: gates)")
    stores = parser.add_mutually_exclusive_group()
    stores.add_argument("--database", help="SQLAlchemy URL (default: SQLite in a temp dir)")
    stores.add_argument("--postgres", action="store_true",
                        help="a throwaway PostgreSQL 15 cluster, with empty databases for each run")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--no-fast-path", action="store_true",
                       help="scim.fast_path = false: scim2-server serves every request")
    modes.add_argument("--compare", action="store_true",
                       help="run the bench without the hot path, then with it, and print both side by side")
    args = parser.parse_args()
    if args.compare and args.database and "postgresql" in args.database:
        parser.error("--compare needs two stores: use --postgres, or run once with and once without --no-fast-path")
    if not args.postgres:
        compare(args)
        return
    from pg import running_postgres
    with running_postgres() as server:
        def fresh() -> str:
            """An empty database for the server, and one beside it for the in-process baseline."""
            name = f"bench_{uuid.uuid4().hex[:12]}"
            server.create_database(f"{name}_inproc")
            return server.create_database(name)
        compare(args, fresh)


def compare(args: argparse.Namespace, fresh: Callable[[], str] | None = None) -> None:
    """The bench one way (or both ways, with --compare); ``fresh`` gives each run an empty database."""
    if fresh is not None:
        args.database = fresh()
    if not args.compare:
        measure(args, fast_path=not args.no_fast_path)
        return
    before = measure(args, fast_path=False)
    print()
    if fresh is not None:
        args.database = fresh()
    after = measure(args, fast_path=True)
    print("\nbefore (scim2-server for every request) -> after (hot path), same machine, same run:")
    names = {"healthz": "GET /healthz", "post": "POST /Users", "lookup_small": "userName eq lookup (1,000 users)",
             "lookup_big": f"userName eq lookup ({args.users} users)", "get": "GET /Users/{id}",
             "patch": "PATCH /Users/{id}", "list": "GET /Users?count=100"}
    for key, name in names.items():
        b, a = before[key], after[key]
        print(f"  {name:<36} {b['rate']:>7.0f} -> {a['rate']:>7.0f} req/s (x{a['rate'] / b['rate']:4.1f})"
              f"   p50 {b['p50']:7.2f} -> {a['p50']:6.2f} ms   {a['rate'] / after['healthz']['rate']:5.1%} of /healthz")


if __name__ == "__main__":
    main()
