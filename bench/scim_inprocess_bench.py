"""What a SCIM request costs the application alone, beside ``GET /healthz``: the CPU of
one call of the WSGI application, in-process, no socket, no server threads.

    .venv/bin/python bench/scim_inprocess_bench.py [--users 2000] [--rounds 2] [--database URL]

Builds the runtime as `dirbridge serve` does (SQLite in a throwaway directory unless
--database), makes --users users through the service layer, then calls the WSGI
application (``create_app``: headers, Flask's dispatcher, SCIM) directly with prebuilt
environments, one request at a time: ``GET /healthz`` (the baseline), a ``userName eq``
lookup of each user, and a GET of each by id. Prints the CPU time per request of each.

Beside bench/scim_bench.py, which measures the same requests through ``dirbridge
serve`` with 8 clients, this tells the application's own cost from the server's: what
the server spends beyond the sum of the two (waitress's I/O, its threads trading the
GIL) is not the application's.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2, help="each kind is measured this many times, in turn")
    parser.add_argument("--database", help="SQLAlchemy URL (default: SQLite in a temp dir)")
    args = parser.parse_args()

    from werkzeug.test import EnvironBuilder

    from bench.inprocess import scim_runtime
    from bridge.services import Actor
    from bridge.web import create_app

    rt, token = scim_runtime(args.database, "scim-inprocess-")
    with rt.services.unit(Actor.scim_client("bench")) as uow:
        ids = uow.users.create_many([{"user_name": f"user{i}@example.com", "email": f"user{i}@example.com"}
                                     for i in range(args.users)])
    app = create_app(rt)

    def environ(path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
        return EnvironBuilder(path=path, query_string=query,
                              headers={"Authorization": f"Bearer {token}"}).get_environ()

    def call(env: dict[str, Any]) -> str:
        status: list[str] = []
        body = app(dict(env), lambda s, _h, _e=None: status.append(s))
        b"".join(body)
        return status[0]

    kinds: dict[str, list[dict[str, Any]]] = {
        "GET /healthz (baseline)": [environ("/healthz")] * args.users,
        "userName eq lookup": [environ("/scim/v2/Users", {"filter": f'userName eq "user{i}@example.com"'})
                               for i in range(args.users)],
        "GET /Users/{id}": [environ(f"/scim/v2/Users/{user_id}") for user_id in ids],
    }
    for envs in kinds.values():  # warm up: caches, statements compiled; and every answer is a 200
        assert call(envs[0]).startswith("200"), call(envs[0])

    def cpu_per_call(envs: Iterable[dict[str, Any]], run: Callable[[dict[str, Any]], str]) -> float:
        envs = list(envs)
        started = time.process_time()
        for env in envs:
            run(env)
        return (time.process_time() - started) / len(envs)

    print(f"dirbridge SCIM in-process: {args.users} users, "
          f"{'PostgreSQL' if args.database else 'SQLite'}, one request at a time, CPU per request")
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind, envs in kinds.items():
            results[kind].append(cpu_per_call(envs, call))
    baseline = min(results["GET /healthz (baseline)"])
    for kind, seconds in results.items():
        best = min(seconds)
        print(f"  {kind:28} {best * 1e6:7.0f} µs (best of {args.rounds}; x{best / baseline:.1f} /healthz)")


if __name__ == "__main__":
    main()
