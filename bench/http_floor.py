"""The WSGI layer against its floor: what waitress, Flask and dirbridge's own request
handling each cost, in one run, with the same clients.

    .venv/bin/python bench/http_floor.py [--clients 8] [--requests 5000] [--rounds 3]

Three servers, each in a process of its own on a free loopback port, each with the
threads ``dirbridge serve`` runs with (2 per client, as bench/scim_bench.py configures):

1. waitress serving a bare WSGI callable that answers a fixed JSON body: the server's
   own cost, the floor under every figure below;
2. waitress serving a one-route Flask app answering the same JSON with ``jsonify``: what
   Flask and Werkzeug add;
3. ``dirbridge serve``'s ``GET /healthz`` (its middlewares: request ids, security
   headers, body limits, metrics; and the store's liveness answer): what dirbridge adds.

Then, in this process, the JSON encoders on a SCIM page of 100 users as the hot path
renders it: the standard library's ``json.dumps`` and, when it is installed, orjson.
All three servers run at once and are measured in turns, ``--rounds`` times; each
figure is a server's best round (the machine's other work slows rounds, never speeds
them up). The figures say where an HTTP request's time goes before SCIM or the check engine
does anything (bench/scim_bench.py and bench/check_bench.py print /healthz beside
their own figures).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scim_bench import Bench, Client, line, run  # noqa: E402
from tests.fixtures.net import free_port, wait_for_port  # noqa: E402

BODY = b'{"status":"ok"}'

BARE = textwrap.dedent('''
    import sys, waitress
    BODY = b'{"status":"ok"}'
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
        return [BODY]
    waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]), _quiet=True)
''')

FLASK = textwrap.dedent('''
    import sys, waitress
    from flask import Flask, jsonify
    app = Flask("floor")
    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")
    waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]), _quiet=True)
''')


@contextmanager
def server(source: str, threads: int) -> Iterator[int]:
    """A waitress process serving ``source``'s app; yields its port."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", source, str(port), str(threads)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def over_http(connections: list[Client], requests: int) -> dict[str, float]:
    """GET /healthz ``requests`` times, spread over the keep-alive ``connections``."""
    return run(connections, list(range(requests)), lambda c, _: c.call("GET", "/healthz")[0])


def scim_page() -> list[dict[str, Any]]:
    """100 users as the SCIM hot path publishes them (the shape of a page's Resources)."""
    return [{
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": f"2f1c6a54-0d1e-4a47-9a51-{i:012d}", "externalId": f"ext-{i}",
        "userName": f"user{i}@example.com", "displayName": f"Bench User {i}",
        "name": {"givenName": "Bench", "familyName": f"User {i}", "formatted": f"Bench User {i}"},
        "emails": [{"value": f"user{i}@example.com", "type": "work", "primary": True}],
        "active": True, "locale": "de-DE", "timezone": "Europe/Berlin",
        "groups": [{"value": f"g{j}", "display": f"Group {j}", "$ref": f"http://127.0.0.1/scim/v2/Groups/g{j}"}
                   for j in range(3)],
        "meta": {"resourceType": "User", "created": "2026-12-07T10:00:00+00:00",
                 "lastModified": "2026-12-07T10:00:00+00:00", "version": f'W/"{i}"',
                 "location": f"http://127.0.0.1/scim/v2/Users/2f1c6a54-0d1e-4a47-9a51-{i:012d}"},
    } for i in range(100)]


def encoders() -> None:
    """The JSON encoders on a page of 100 users, per page."""
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 100,
            "startIndex": 1, "itemsPerPage": 100, "Resources": scim_page()}
    rounds = 300
    started = time.perf_counter()
    for _ in range(rounds):
        json.dumps(body).encode()
    stdlib = (time.perf_counter() - started) / rounds * 1000
    print(f"  json.dumps (standard library)      {stdlib:6.3f} ms per page of 100 users")
    try:
        import orjson
    except ImportError:
        print("  orjson                             not installed")
        return
    started = time.perf_counter()
    for _ in range(rounds):
        orjson.dumps(body)
    fast = (time.perf_counter() - started) / rounds * 1000
    print(f"  orjson.dumps                       {fast:6.3f} ms per page of 100 users (x{stdlib / fast:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=5000, help="requests per round and server")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    threads = args.clients * 2
    print(f"HTTP floor: {args.clients} clients, best of {args.rounds} rounds of {args.requests} requests, "
          f"{threads} server threads, {os.cpu_count()} CPUs")
    work_dir = Path(tempfile.mkdtemp(prefix="http-floor-"))
    bench = Bench(work_dir, args.clients, None)
    names = ("waitress, bare WSGI callable", "waitress + Flask, jsonify", "dirbridge serve, GET /healthz")
    best: dict[str, dict[str, float]] = {}
    with server(BARE, threads) as bare_port, server(FLASK, threads) as flask_port, bench.serving():
        ports = (bare_port, flask_port, bench.port)
        pools = [[Client(port, "unused") for _ in range(args.clients)] for port in ports]
        for pool in pools:
            over_http(pool, min(500, args.requests))  # warm up
        for _ in range(args.rounds):
            for name, pool in zip(names, pools, strict=True):
                result = over_http(pool, args.requests)
                if name not in best or result["rate"] > best[name]["rate"]:
                    best[name] = result
    bare, flask, ours = (best[name] for name in names)
    line(names[0], bare, "[floor]")
    line(names[1], flask, f"{flask['rate'] / bare['rate']:5.1%} of the floor")
    line(names[2], ours, f"{ours['rate'] / bare['rate']:5.1%} of the floor, "
                         f"{ours['rate'] / flask['rate']:5.1%} of Flask's")
    print("JSON encoding, in this process:")
    encoders()


if __name__ == "__main__":
    main()
