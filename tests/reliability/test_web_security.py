"""The invitation pages and the /status operator login against hostile values: everything
echoed is escaped, forms carry CSRF protection, the session cookie is HttpOnly,
SameSite=Strict and Secure over https, the pages forbid framing, scripts and caching, the
admin API on an operator session wants the CSRF header for writes; and login failures do
the same work and take as long for an unknown user name as for a wrong password."""

from __future__ import annotations

import difflib
import functools
import gc
import html
import random
import re
import statistics
import time

import pytest
from sqlalchemy import event, select

from bridge.accounts import invitations
from bridge.accounts.context import context_for
from bridge.accounts.passwords import hash_password
from bridge.clock import utcnow
from bridge.services import Actor
from bridge.store.models import User
from tests.fixtures.accounts import accounts_config, csrf_of, link_in, token_of
from tests.reliability.conftest import LONG, Report

XSS = "<svg/onload=alert(1)>"


@pytest.fixture
def config(smtp_sink):  # type: ignore[no-untyped-def]
    return accounts_config(smtp_sink, policy={
        "password": {"hash_time_cost": 2, "hash_memory_kib": 19456},
        "lockout": {"max_failures_per_account": 100000, "max_failures_per_ip": 100000}})


def _invite(runtime, smtp_sink, user_name: str, display: str) -> str:  # type: ignore[no-untyped-def]
    ctx = context_for(runtime)
    with runtime.services.unit(Actor(name="t")) as uow:
        user = uow.users.create(user_name=user_name, email="xss@example.org", display_name=display)
        invitations.issue(ctx, uow, user)
    return link_in(smtp_sink.wait_for(1)[-1].text)


def test_invitation_pages_escape_what_they_echo_and_want_csrf(client, runtime, smtp_sink, report: Report):
    link = _invite(runtime, smtp_sink, f"x{XSS}", '"><script>alert(2)</script>')
    page = client.get(link[len("https://portal.example.org"):])
    assert page.status_code == 200
    assert XSS not in page.text and "<script>alert" not in page.text and "&lt;svg/onload=alert(1)&gt;" in page.text
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie, cookie
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    tried = 1
    for token in (f"{XSS}", "\"><script>alert(3)</script>", "x" * 5000, "%00"):
        bad = client.get("/invite", query_string={"token": token})
        tried += 1
        assert bad.status_code in (400, 404, 410) and "<script>alert" not in bad.text and XSS not in bad.text
    form = {"token": token_of(link), "password": "Str0ng-Passw0rd!", "password_confirm": "Str0ng-Passw0rd!"}
    for csrf in (None, "", "forged", csrf_of(page.text) + "x"):
        data = form if csrf is None else {**form, "csrf": csrf}
        tried += 1
        assert client.post("/invite", data=data).status_code == 400
    fresh = client.application.test_client()  # another browser: the right token, but not its session
    assert fresh.post("/invite", data={**form, "csrf": csrf_of(page.text)}).status_code == 400
    mismatch = client.post("/invite", data={**form, "csrf": csrf_of(page.text), "password_confirm": XSS})
    assert mismatch.status_code == 400 and XSS not in mismatch.text
    done = client.post("/invite", data={**form, "csrf": csrf_of(page.text)})
    assert done.status_code == 200, done.text
    report.add("inputs", target="invitation pages (XSS, CSRF)", tried=tried + 2)


def _hodges_lehmann(differences: list[float]) -> float:
    """The Hodges-Lehmann estimate of the centre of paired differences: the median of all
    Walsh averages (d_i + d_j) / 2, i <= j. Robust like the median (a GC pause or another
    process's burst moves it little), about as efficient as the mean under noise."""
    n = len(differences)
    return statistics.median((differences[i] + differences[j]) / 2 for i in range(n) for j in range(i, n))


def _signed_rank_effect(differences: list[float]) -> float:
    """Matched-pairs rank-biserial correlation (-1..1; 0 = neither side tends to be slower)."""
    nonzero = sorted((abs(d), d > 0) for d in differences if d != 0)
    total = len(nonzero) * (len(nonzero) + 1) / 2
    positive = sum(rank for rank, (_, up) in enumerate(nonzero, start=1) if up)
    return (2 * positive - total) / total if total else 0.0


LOGIN_PASSWORD = "Right-Passw0rd!"
NAMES = 5  # names per side, each tried alike, so that each has the same history of attempts


def _login_users(runtime) -> None:  # type: ignore[no-untyped-def]
    policy = runtime.config.policy.password
    with runtime.services.unit(Actor(name="t")) as uow:
        for i in range(NAMES):
            user = uow.users.create(user_name=f"known.user{i}", email=f"k{i}@example.org")
            uow.users.set_password_hash(user, hash_password(policy, LOGIN_PASSWORD))
        for i in range(20):  # other users, so that the directory is not just the probed names
            uow.users.create(user_name=f"other.user{i}", email=f"o{i}@example.org")


def _fail_login(client, admin_headers, name: str) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/api/v1/auth/login", headers=admin_headers,
                           json={"username": name, "password": "Wrong-Passw0rd!", "client_ip": "203.0.113.9"})
    assert response.status_code == 401 and response.json["error"]["code"] == "invalidCredentials", response.json


def test_login_failures_do_the_same_work_for_unknown_and_known_names(client, runtime, admin_headers,
                                                                     monkeypatch: pytest.MonkeyPatch):
    """The cause of a timing gap, checked exactly: a failure with a known name runs the same
    SQL statements as one with an unknown name, and verifies one argon2 hash of the same
    parameters (the configured ones: the dummy hash of an unknown name is made with them)."""
    from argon2 import PasswordHasher, extract_parameters

    _login_users(runtime)
    statements: list[str] = []
    verified: list[object] = []
    real_verify = PasswordHasher.verify

    def on_execute(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()))

    def verify(self, hash, password):  # type: ignore[no-untyped-def]  # noqa: A002
        verified.append(extract_parameters(hash if isinstance(hash, str) else hash.decode()))
        return real_verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", verify)
    for warm in ("known.user0", "nobody.user0"):
        _fail_login(client, admin_headers, warm)
    work: dict[str, tuple[list[str], list[object]]] = {}
    event.listen(runtime.store.engine, "before_cursor_execute", on_execute)
    try:
        for kind, name in (("known", "known.user1"), ("unknown", "nobody.user1")):
            statements.clear()
            verified.clear()
            _fail_login(client, admin_headers, name)
            work[kind] = (list(statements), list(verified))
    finally:
        event.remove(runtime.store.engine, "before_cursor_execute", on_execute)
    assert work["known"][0] == work["unknown"][0], "\n".join(
        difflib.unified_diff(work["unknown"][0], work["known"][0], "unknown name", "known name", lineterm=""))
    policy = runtime.config.policy.password
    expected = extract_parameters(hash_password(policy, "x"))
    assert work["known"][1] == work["unknown"][1] == [expected], work


def test_login_failures_take_as_long_for_unknown_and_known_names(client, runtime, admin_headers, report: Report):
    """Measured in-process (the Flask test client: no sockets, no server threads), after a
    warm-up, in pairs (one known and one unknown name, in random order) so that drift on a
    shared machine hits both sides of a pair alike. The estimate of the gap is the
    Hodges-Lehmann centre of the paired differences; it must stay under GAP_MS, well
    below the 5 ms (~15 % of a 30 ms failure) that a dropped or added statement or a
    differently-costed hash takes (a 5 ms gap injected into the known-name path fails it)."""
    _login_users(runtime)
    pairs = 400 if LONG else 120
    rng = random.Random(8)
    for i in range(10):  # warm-up: the dummy hash, statement caches, connections
        _fail_login(client, admin_headers, f"known.user{i % NAMES}")
        _fail_login(client, admin_headers, f"nobody.user{i % NAMES}")
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    differences: list[float] = []
    gc.collect()
    for i in range(pairs):
        pair = [("known", f"known.user{i % NAMES}"), ("unknown", f"nobody.user{i % NAMES}")]
        rng.shuffle(pair)
        took: dict[str, float] = {}
        for kind, name in pair:
            started = time.perf_counter()
            _fail_login(client, admin_headers, name)
            took[kind] = time.perf_counter() - started
            times[kind].append(took[kind])
        differences.append(took["known"] - took["unknown"])
    known, unknown = (statistics.median(times[k]) for k in ("known", "unknown"))
    gap = _hodges_lehmann(differences)
    effect = _signed_rank_effect(differences)
    report.add("timing", backend=runtime.store.engine.dialect.name, pairs=pairs,
               known_median_ms=round(known * 1000, 2), unknown_median_ms=round(unknown * 1000, 2),
               gap_ms=round(gap * 1000, 2), matched_rank_biserial=round(effect, 3))
    report.add("inputs", target="login timing probes", tried=2 * pairs)
    assert abs(gap) <= GAP_MS / 1000, (f"a failed login with a known name takes {gap * 1000:.2f} ms longer than "
                                       f"with an unknown one (medians {known * 1000:.1f} / {unknown * 1000:.1f} ms, "
                                       f"matched rank-biserial {effect:.2f})")


GAP_MS = 2.0


# -- the /status operator login ---------------------------------------------------------------

STATUS_XSS = ["<svg/onload=alert(1)>", '"><script>alert(1)</script>', "' autofocus onfocus=alert(1) x='",
              "</textarea><img src=x onerror=alert(1)>", "{{7*7}}", "javascript:alert(1)"]


@pytest.fixture
def operator_account(runtime):  # type: ignore[no-untyped-def]
    from tests.fixtures.accounts import FakeClock
    from tests.fixtures.browser import make_operator

    runtime.clock = clock = FakeClock(utcnow().replace(microsecond=0))
    account = make_operator(runtime)
    clock.advance(seconds=30)  # the next TOTP step: the enrolment used this one
    return account, clock


def _status_app(runtime, **server):  # type: ignore[no-untyped-def]
    """A new app over ``runtime`` with these [server] settings (read when the app is made)."""
    from bridge.web import create_app

    config = runtime.config
    runtime.config = runtime.services.config = config.model_copy(
        update={"server": config.server.model_copy(update=server)})
    return create_app(runtime)


def _session_cookie(response) -> str:  # type: ignore[no-untyped-def]
    cookies = [v for k, v in response.headers.items() if k == "Set-Cookie" and v.startswith("dirbridge_session=")]
    assert cookies, response.headers
    return cookies[-1]


def _assert_page_headers(response) -> None:  # type: ignore[no-untyped-def]
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp, csp
    assert "script-src 'none'" in csp or "script-src 'nonce-" in csp, csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "no-store" in response.headers["Cache-Control"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Type"].startswith("text/html")


def test_status_login_escapes_what_it_echoes_and_sends_its_headers(client, runtime, operator_account,
                                                                   report: Report):
    from tests.fixtures.browser import csrf_in

    account, clock = operator_account
    page = client.get("/status/login")
    assert page.status_code == 200
    _assert_page_headers(page)
    csrf = csrf_in(page.text)
    tried = 0
    for payload in STATUS_XSS + [f"{account.user_name}{STATUS_XSS[1]}"]:
        for password in ("wrong", account.password):  # the refusal echoes the name either way
            response = client.post("/status/login", data={"csrf": csrf, "username": payload, "password": password})
            tried += 1
            assert response.status_code == 401, (payload, response.status_code)
            _assert_page_headers(response)
            text = response.text
            assert payload not in text or payload in ("{{7*7}}", "javascript:alert(1)"), payload
            assert "<script>alert" not in text and "<svg/onload" not in text and "<img src=x" not in text
            assert "onfocus=alert(1) x='\"" not in text and "49" not in re.findall(r'value="([^"]*)"', text)
            value = re.search(r'id="username" name="username" type="text" value="([^"]*)"', text)
            assert value and html.unescape(value.group(1)) == payload, (payload, value)  # escaped, whole, in place
    report.add("inputs", target="status login (XSS, headers)", tried=tried)


def test_status_login_wants_the_csrf_token_of_its_own_session(client, runtime, operator_account, report: Report):
    from tests.fixtures.browser import csrf_in

    account, clock = operator_account
    page = client.get("/status/login")
    csrf = csrf_in(page.text)
    right = {"username": account.user_name, "password": account.password, "code": account.code(clock.now)}
    tried = 0
    for forged in (None, "", "forged", csrf + "x", csrf[:-1], csrf.upper() if csrf.upper() != csrf else csrf + "A"):
        data = right if forged is None else {**right, "csrf": forged}
        response = client.post("/status/login", data=data)
        tried += 1
        assert response.status_code == 400, (forged, response.status_code)
        assert client.get("/status").status_code == 303  # not logged in
    other_browser = client.application.test_client()  # the right token, but not its session
    assert other_browser.post("/status/login", data={**right, "csrf": csrf}).status_code == 400
    assert other_browser.get("/status").status_code == 303
    assert client.post("/status/login", data={**right, "csrf": csrf}).status_code == 303  # its own token
    assert client.get("/status").status_code == 200
    for forged in (None, "", "forged", csrf):  # the login made a new session, and a new token
        response = client.post("/status/logout", data={} if forged is None else {"csrf": forged})
        tried += 1
        assert response.status_code == 400, forged
        assert client.get("/status").status_code == 200  # still logged in
    fresh = re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/status").text)
    assert fresh and fresh.group(1) != csrf
    assert client.post("/status/logout", data={"csrf": fresh.group(1)}).status_code == 303
    assert client.get("/status").status_code == 303
    report.add("inputs", target="status login (CSRF)", tried=tried)


@pytest.mark.parametrize("setup", ["public_url https", "https request", "X-Forwarded-Proto behind a proxy"])
def test_the_operator_session_cookie_is_httponly_strict_and_secure_over_https(runtime, operator_account, setup: str):
    from tests.fixtures.browser import login_form

    account, clock = operator_account
    if setup == "public_url https":
        client = _status_app(runtime, public_url="https://status.example.org").test_client()
    elif setup == "https request":  # served over https directly (public_url not set)
        client = _status_app(runtime, public_url=None).test_client()
        https = {"base_url": "https://localhost"}
        client.get, client.post = (functools.partial(client.get, **https),  # type: ignore[method-assign]
                                   functools.partial(client.post, **https))
    else:
        client = _status_app(runtime, public_url=None, trusted_proxies=1).test_client()
        client.environ_base["HTTP_X_FORWARDED_PROTO"] = "https"
        client.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.20"
    response = login_form(client, account.user_name, account.password, account.code(clock.now))
    assert response.status_code == 303, response.text
    cookie = _session_cookie(response)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "; Secure" in cookie, (setup, cookie)
    assert client.get("/status").status_code == 200


def test_the_session_cookie_is_not_secure_only_because_a_client_says_https(runtime, operator_account):
    """Without trusted proxies, X-Forwarded-Proto is anyone's header: it changes nothing."""
    from tests.fixtures.browser import login_form

    account, clock = operator_account
    client = _status_app(runtime, public_url=None, trusted_proxies=0).test_client()
    client.environ_base["HTTP_X_FORWARDED_PROTO"] = "https"
    response = login_form(client, account.user_name, account.password, account.code(clock.now))
    assert response.status_code == 303
    cookie = _session_cookie(response)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie, cookie


def test_the_admin_api_on_an_operator_session_refuses_writes_without_the_csrf_header(client, runtime,
                                                                                    operator_account,
                                                                                    report: Report):
    from tests.fixtures.browser import login_form

    account, clock = operator_account
    assert login_form(client, account.user_name, account.password, account.code(clock.now)).status_code == 303
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/status").text)
    assert token
    assert client.get("/api/v1/users").status_code == 200  # reads need no header
    tried = 0
    writes = [("POST", "/api/v1/roles", {"name": "helpdesk", "rights": ["users.read"]}),
              ("POST", "/api/v1/users", {"user_name": "csrf.victim", "email": "v@example.org"}),
              ("PATCH", f"/api/v1/users/{account.user_id}", {"display_name": "pwned"}),
              ("DELETE", f"/api/v1/users/{account.user_id}", None),
              ("POST", "/api/v1/auth/ip-unlock", {"client_ip": "192.0.2.1"})]
    for method, path, body in writes:
        for header in (None, "", "forged", token.group(1) + "x", token.group(1).swapcase()):
            headers = {} if header is None else {"X-CSRF-Token": header}
            response = client.open(path, method=method, json=body, headers=headers)
            tried += 1
            assert response.status_code == 403 and response.json["error"]["code"] == "csrfFailed", \
                (method, path, header, response.status_code)
        # A form post (what a cross-site page can send without CORS) is refused the same way.
        response = client.open(path, method=method, data={"name": "x"},
                               content_type="application/x-www-form-urlencoded")
        tried += 1
        assert response.status_code == 403, (method, path, response.status_code)
    with runtime.store.read() as session:
        assert session.get(User, account.user_id).display_name != "pwned"
        assert not session.scalar(select(User).where(User.user_name == "csrf.victim"))
    created = client.post("/api/v1/roles", json=writes[0][2], headers={"X-CSRF-Token": token.group(1)})
    assert created.status_code == 201, created.json  # the right header works
    report.add("inputs", target="admin API on an operator session (CSRF)", tried=tried)
