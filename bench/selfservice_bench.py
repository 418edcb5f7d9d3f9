"""A forgotten password's answer time for a known name beside an unknown one (the baseline
it must not differ from), and GET /healthz on the same app (the floor), in one run.

    .venv/bin/python bench/selfservice_bench.py [--rounds 95] [--postgres]

In-process through the Flask test client, so that the figures are the request's own work
(the mail is made and sent by the outbox after the answer; here it goes nowhere, as a
mail server that refuses would). The known and unknown requests alternate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bridge.config import load_config_data  # noqa: E402
from bridge.runtime import build_runtime  # noqa: E402
from bridge.services import Actor  # noqa: E402
from bridge.store import Store, migrate  # noqa: E402
from bridge.web import create_app  # noqa: E402


def run(url: str | None, rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="selfservice-bench-"))
    store = Store(url or f"sqlite:///{tmp / 'bench.sqlite3'}")
    migrate.upgrade(store.engine)
    config = load_config_data({
        "data_dir": str(tmp), "self_service": {"requests_per_hour": 100, "requests_per_ip_per_hour": 10000},
        "smtp": {"host": "127.0.0.1", "port": 9, "tls": "none", "timeout": 0.2}})
    rt = build_runtime(config, store=store)
    with rt.services.unit(Actor(name="bench")) as uow:
        uow.users.create(user_name="known.user", email="known@example.org")
        token = uow.tokens.create("bench", "admin")[1]
    client = create_app(rt).test_client()
    headers = {"Authorization": f"Bearer {token}"}
    times: dict[str, list[float]] = {"known": [], "unknown": [], "healthz": []}
    for i in range(min(rounds, 95)):  # under the per-name limit of the hour
        pairs = [("known", "known.user"), ("unknown", "ghost.user")]
        for kind, name in pairs if i % 2 else reversed(pairs):
            rt.outbox.drain(5)  # the previous mail's work must not weigh on this request
            started = time.perf_counter()
            answer = client.post("/api/v1/account/password-reset", headers=headers,
                                 json={"login": name, "client_ip": f"10.1.{i // 200}.{i % 200}"})
            times[kind].append(time.perf_counter() - started)
            assert answer.status_code == 202, answer.json
        started = time.perf_counter()
        client.get("/healthz")
        times["healthz"].append(time.perf_counter() - started)
    print(f"{store.engine.dialect.name}: POST /api/v1/account/password-reset, median of {len(times['known'])} each")
    for kind, label in (("known", "known name"), ("unknown", "unknown name (baseline)"),
                        ("healthz", "GET /healthz (floor)")):
        print(f"  {label:<26} {statistics.median(times[kind]) * 1000:7.2f} ms")
    rt.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=95)
    parser.add_argument("--postgres", action="store_true", help="on a throwaway PostgreSQL cluster (as the tests')")
    args = parser.parse_args()
    if args.postgres:
        from pg import postgres_database

        with postgres_database() as url:
            run(url, args.rounds)
    else:
        run(None, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
