"""The lockout against concurrent guesses, on a real ``dirbridge serve`` (its own thread
pool, SQLite and PostgreSQL): however many attempts arrive at once, at most the limit
are checked per lock period, for passwords and TOTP codes alike. Before, 30 concurrent
wrong passwords had 11 checked (limit 5), and 8 guesses beside the right password after
4 failures let the right one in as a 10th check. The figures go to the report."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.fixtures.app import run_cli
from tests.fixtures.net import free_port
from tests.integration.test_daemon import start_serve
from tests.reliability.conftest import Report

LIMIT = 5
CONCURRENCY = 30
FAST_HASH = "[policy.password]\nhash_time_cost = 1\nhash_memory_kib = 8192\nhash_parallelism = 1\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request, tmp_path: Path):
    port = free_port()
    database = ""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        database = f'[database]\nurl = "{url}"\n'
        (tmp_path / "dirbridge.toml").write_text(f'data_dir = "data"\n{database}')
        assert run_cli("db", "upgrade", "--config", "dirbridge.toml", cwd=tmp_path).returncode == 0
    proc = start_serve(tmp_path, port, f"workers = {CONCURRENCY + 4}\n{database}{FAST_HASH}"
                       f"[policy.lockout]\nmax_failures_per_account = {LIMIT}\n")
    token = run_cli("token", "create", "portal", "--admin", "--config", "dirbridge.toml", cwd=tmp_path)
    assert token.returncode == 0, token.stderr
    yield port, token.stdout.strip(), request.param
    proc.terminate()
    proc.wait(timeout=30)


def call(port: int, method: str, path: str, body: Any, token: str) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, json.dumps(body), {"Authorization": f"Bearer {token}",
                                                      "Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else {}
    finally:
        conn.close()


def make_user(port: int, token: str, name: str) -> tuple[str, str]:
    status, user = call(port, "POST", "/api/v1/users", {"user_name": name, "email": f"{name}@example.org"}, token)
    assert status == 201, user
    status, reset = call(port, "POST", f"/api/v1/users/{user['id']}/password-reset", {}, token)
    assert status == 200, reset
    return user["id"], reset["temporary_password"]


def burst(port: int, token: str, bodies: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Every attempt at once: each on its own connection, released together."""
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda body: call(port, "POST", "/api/v1/auth/login", body, token), bodies))


def attempt(name: str, password: str, n: int, totp: str | None = None) -> dict[str, Any]:
    # each from its own address, so that the per-IP limit is not what stops them
    body = {"username": name, "password": password, "client_ip": f"198.51.100.{n % 250 + 1}"}
    return {**body, "totp": totp} if totp else body


def test_concurrent_guesses_never_get_more_checks_than_the_limit(served, report: Report):
    port, token, backend = served
    _, _ = make_user(port, token, "race.one")
    answers = burst(port, token, [attempt("race.one", f"Wrong-Guess-{i}x", i) for i in range(CONCURRENCY)])
    checked = sum(1 for status, body in answers if status == 401)
    assert {status for status, _ in answers} <= {401, 423}, answers
    assert checked <= LIMIT, checked

    # four failures, then eight guesses and the right password at once: one check is left
    _, right = make_user(port, token, "race.two")
    for i in range(LIMIT - 1):
        assert call(port, "POST", "/api/v1/auth/login", attempt("race.two", "Wrong-Guess-1x", 200 + i), token)[0] == 401
    mixed = [attempt("race.two", f"Wrong-Guess-{i}x", 210 + i) for i in range(8)] + [attempt("race.two", right, 220)]
    answers2 = burst(port, token, mixed)
    checked2 = sum(1 for status, _ in answers2 if status in (200, 401))
    assert checked2 <= 1, answers2

    # TOTP: the password is known; thirty code guesses at once
    user_id, password = make_user(port, token, "race.three")
    status, enrol = call(port, "POST", f"/api/v1/users/{user_id}/totp", {}, token)
    assert status == 201, enrol
    status, confirmed = call(port, "POST", f"/api/v1/users/{user_id}/totp/confirm",
                             {"code": pyotp.TOTP(enrol["secret"]).now()}, token)
    assert status == 200, confirmed
    time.sleep(0)  # the codes below are wrong whatever the step
    valid = {pyotp.TOTP(enrol["secret"]).at(time.time() + d) for d in (-30, 0, 30)}
    guesses = [f"{(123456 + 7919 * i) % 1000000:06d}" for i in range(CONCURRENCY + 10)]
    guesses = [g for g in guesses if g not in valid][:CONCURRENCY]
    answers3 = burst(port, token, [attempt("race.three", password, 300 + i, totp=g) for i, g in enumerate(guesses)])
    checked3 = sum(1 for status, body in answers3 if status == 401)
    assert checked3 <= LIMIT, answers3
    report.add("lockout", backend=backend, concurrent=CONCURRENCY, limit=LIMIT, passwords_checked=checked,
               after_four_failures_checked=checked2, totp_codes_checked=checked3)
