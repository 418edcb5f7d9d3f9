"""/status through Flask's test client: the operator login (password + TOTP + the right
dirbridge.operate), CSRF, logout and the session's end, the admin API on an operator
session, and what the page and the guard's plan page show (escaped)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from bridge.clock import utcnow
from bridge.services import Actor
from bridge.store.models import AuditEvent, JobRun, SyncRun
from bridge.web import operator as operator_module
from tests.fixtures.accounts import FakeClock, accounts_config
from tests.fixtures.app import BACKENDS
from tests.fixtures.browser import csrf_in, login_form, make_operator


@pytest.fixture
def db_url(sqlite_url):
    """SQLite only: the login and the page do not depend on the backend (test_status_scim covers both)."""
    return sqlite_url


@pytest.fixture
def config():
    return accounts_config()


@pytest.fixture
def clock(runtime):
    runtime.clock = found = FakeClock(utcnow().replace(microsecond=0))
    return found


@pytest.fixture
def ops(runtime, clock):
    account = make_operator(runtime)
    clock.advance(seconds=30)  # the next TOTP step: the enrolment used this one
    return account


def with_status(runtime, **changes) -> None:
    config = runtime.config
    runtime.config = runtime.services.config = config.model_copy(
        update={"status": config.status.model_copy(update=changes)})


def logged_in(client, account, clock) -> None:
    response = login_form(client, account.user_name, account.password, account.code(clock.now))
    assert response.status_code == 303 and response.headers["Location"].endswith("/status"), response.data
    clock.advance(seconds=30)


def test_status_wants_a_login_and_shows_nothing_before(client, runtime, ops):
    for path in ("/status", "/status/sync-runs/1"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["Location"].endswith("/status/login")
    form = client.get("/status/login")
    html = form.get_data(as_text=True)
    assert form.status_code == 200 and 'name="password"' in html and 'name="code"' in html
    for secret in ("audit-retention", runtime.replica, "sqlite", "Log out"):
        assert secret not in html
    csp = form.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert client.get("/healthz").status_code == 200  # health stays public


def test_an_operator_logs_in_with_password_and_totp(client, runtime, ops, clock):
    logged_in(client, ops, clock)
    page = client.get("/status")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "audit-retention" in html and runtime.replica in html and ops.user_name in html
    assert f'<meta http-equiv="refresh" content="{runtime.config.status.refresh_seconds}">' in html
    assert 'name="viewport"' in html and "<script" not in html
    cookie = client.get_cookie("dirbridge_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Strict"
    with runtime.store.read() as session:
        events = list(session.scalars(select(AuditEvent).where(AuditEvent.action == "login.ok")))
        assert [e.channel for e in events] == ["status-page"]


def test_a_wrong_password_and_an_unknown_user_get_the_same_refusal(client, ops, clock):
    wrong = login_form(client, ops.user_name, "Wrong-Password-1", ops.code(clock.now))
    unknown = login_form(client, "nobody.here", "Wrong-Password-1", ops.code(clock.now))
    assert wrong.status_code == unknown.status_code == 401
    for response in (wrong, unknown):
        assert "Wrong user name or password." in response.get_data(as_text=True)
    assert client.get("/status").status_code == 303


def test_a_wrong_or_missing_totp_code_is_refused(client, ops, clock):
    wrong = login_form(client, ops.user_name, ops.password, "000000" if ops.code(clock.now) != "000000" else "111111")
    assert wrong.status_code == 401 and "The code is wrong or was used already." in wrong.get_data(as_text=True)
    missing = login_form(client, ops.user_name, ops.password, None)
    assert missing.status_code == 401 and "Enter the code of your authenticator app" in missing.get_data(as_text=True)
    assert client.get("/status").status_code == 303
    logged_in(client, ops, clock)
    # A used code does not open a second session (replay).
    other = client.application.test_client()
    replay = login_form(other, ops.user_name, ops.password, ops.code(clock.now - timedelta(seconds=30)))
    assert replay.status_code == 401


def test_the_lockout_of_the_portal_login_applies(client, ops, clock):
    for _ in range(5):
        assert login_form(client, ops.user_name, "Wrong-Password-1", None).status_code == 401
    locked = login_form(client, ops.user_name, ops.password, ops.code(clock.now))
    assert locked.status_code == 423 and client.get("/status").status_code == 303


def test_a_user_without_the_operator_right_is_refused(client, runtime, clock):
    plain = make_operator(runtime, "plain.user", operate=False)
    clock.advance(seconds=30)
    refused = login_form(client, plain.user_name, plain.password, plain.code(clock.now))
    assert refused.status_code == 403 and "dirbridge.operate" in refused.get_data(as_text=True)
    assert client.get("/status").status_code == 303


def test_an_admin_is_an_operator_and_totp_is_required(client, runtime, clock):
    admin = make_operator(runtime, "root.admin", operate=False, totp=False, access_type="admin")
    refused = login_form(client, admin.user_name, admin.password, None)
    assert refused.status_code == 403 and "second factor" in refused.get_data(as_text=True)
    with_status(runtime, require_totp=False)
    assert login_form(client, admin.user_name, admin.password, None).status_code == 303
    assert client.get("/status").status_code == 200


def test_csrf_is_required_on_every_post(client, ops, clock):
    client.get("/status/login")
    no_token = client.post("/status/login", data={"username": ops.user_name, "password": ops.password,
                                                  "code": ops.code(clock.now)})
    assert no_token.status_code == 400 and "form expired" in no_token.get_data(as_text=True)
    assert client.get("/status").status_code == 303
    logged_in(client, ops, clock)
    assert client.post("/status/logout", data={"csrf": "forged"}).status_code == 400
    assert client.post("/status/logout").status_code == 400
    assert client.get("/status").status_code == 200  # still logged in


def test_logout_ends_the_session(client, ops, clock):
    logged_in(client, ops, clock)
    csrf = csrf_in(client.get("/status").get_data(as_text=True))
    out = client.post("/status/logout", data={"csrf": csrf})
    assert out.status_code == 303 and out.headers["Location"].endswith("/status/login")
    assert client.get("/status").status_code == 303
    assert client.get("/api/v1/users").status_code == 401


def _cookie_header(client) -> str:
    """The Cookie header this browser sends now (a copy someone could replay)."""
    cookie = client.get_cookie("dirbridge_session")
    assert cookie is not None
    return f"dirbridge_session={cookie.value}"


def _replayed(client, cookie_header: str, path: str):
    """``path`` fetched by another browser that sends only the copied Cookie header."""
    return client.application.test_client(use_cookies=False).get(path, headers={"Cookie": cookie_header})


class TestServerSideSessionEnd:
    """A logout, a password change or reset, a lock and a deactivation end the operator's
    sessions on the server (``users.sessions_valid_after``), a copied cookie too; on both
    backends, as the column's precision matters."""

    @pytest.fixture(params=BACKENDS)
    def db_url(self, request, tmp_path):
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return request.getfixturevalue("postgres_url")

    def test_a_copied_cookie_is_refused_after_logout_and_a_fresh_login_works(self, client, runtime, ops, clock):
        logged_in(client, ops, clock)
        copied = _cookie_header(client)
        assert _replayed(client, copied, "/status").status_code == 200
        assert _replayed(client, copied, "/api/v1/users").status_code == 200
        other = client.application.test_client()  # a second browser, logged in on its own
        logged_in(other, ops, clock)
        csrf = csrf_in(client.get("/status").get_data(as_text=True))
        assert client.post("/status/logout", data={"csrf": csrf}).status_code == 303
        refused = _replayed(client, copied, "/status")
        assert refused.status_code == 303 and refused.headers["Location"].endswith("/status/login")
        assert _replayed(client, copied, "/api/v1/users").status_code == 401
        assert other.get("/status").status_code == 303  # logged out everywhere
        with runtime.store.read() as session:
            events = list(session.scalars(select(AuditEvent).where(AuditEvent.action == "logout")))
            assert [(e.target_id, e.channel) for e in events] == [(ops.user_id, "status-page")]
        # A login right after the logout (in the same second) is a new, valid session.
        logged_in(client, ops, clock)
        assert client.get("/status").status_code == 200
        assert client.get("/api/v1/users").status_code == 200
        assert _replayed(client, copied, "/status").status_code == 303  # the old copy stays dead

    def test_a_password_reset_and_change_end_the_sessions(self, client, runtime, ops, clock, admin_headers):
        logged_in(client, ops, clock)
        copied = _cookie_header(client)
        reset = client.application.test_client().post(f"/api/v1/users/{ops.user_id}/password-reset",
                                                      headers=admin_headers)
        assert reset.status_code == 200, reset.json
        assert client.get("/status").status_code == 303
        assert _replayed(client, copied, "/api/v1/users").status_code == 401
        # The operator's own change (here through the service layer) ends a later session too.
        from bridge.accounts.context import context_for
        from bridge.accounts.credentials import set_new_password

        with runtime.services.unit(Actor(name="test")) as uow:
            set_new_password(context_for(runtime), uow, uow.users.get(ops.user_id), "Changed-Pass-4711")
        login = login_form(client, ops.user_name, "Changed-Pass-4711", ops.code(clock.now))
        assert login.status_code == 303, login.get_data(as_text=True)
        clock.advance(seconds=30)
        assert client.get("/status").status_code == 200
        copied = _cookie_header(client)
        with runtime.services.unit(Actor(name="test")) as uow:
            set_new_password(context_for(runtime), uow, uow.users.get(ops.user_id), "Another-Pass-4712")
        assert _replayed(client, copied, "/status").status_code == 303

    def test_a_lock_and_a_deactivation_end_the_sessions_for_good(self, client, runtime, ops, clock):
        from bridge.accounts.context import context_for

        logged_in(client, ops, clock)
        copied = _cookie_header(client)
        with runtime.services.unit(Actor(name="test")) as uow:
            uow.accounts.lock(uow.users.get(ops.user_id), None, "admin")
        with runtime.services.unit(Actor(name="test")) as uow:
            uow.accounts.unlock(uow.users.get(ops.user_id), now=context_for(runtime).now())
        assert _replayed(client, copied, "/status").status_code == 303  # unlocking does not revive it
        logged_in(client, ops, clock)
        copied = _cookie_header(client)
        with runtime.services.unit(Actor(name="test")) as uow:
            uow.users.deactivate(uow.users.get(ops.user_id))
        with runtime.services.unit(Actor(name="test")) as uow:
            uow.users.update(uow.users.get(ops.user_id), active=True)
        assert _replayed(client, copied, "/status").status_code == 303
        assert _replayed(client, copied, "/api/v1/users").status_code == 401


def test_the_session_ends_after_its_lifetime_and_when_the_right_goes(client, runtime, ops, clock):
    logged_in(client, ops, clock)
    assert client.get("/status").status_code == 200
    clock.advance(seconds=runtime.config.status.session_minutes * 60 + 1)
    assert client.get("/status").status_code == 303
    logged_in(client, ops, clock)
    with runtime.services.unit(Actor(name="test")) as uow:
        uow.grants.take_right(ops.user_id, operator_module.OPERATE_RIGHT, "instance")
    assert client.get("/status").status_code == 303


def test_a_revoked_right_ends_the_sessions_for_good_even_a_copied_cookie(client, runtime, ops, clock):
    """Before, taking the right away ended a session only until the right was given back:
    then the old cookie worked again."""
    from bridge.web.operator import operator_sessions_sweep

    logged_in(client, ops, clock)
    copied = client.get_cookie("dirbridge_session").value
    with runtime.services.unit(Actor(name="test")) as uow:
        uow.grants.take_right(ops.user_id, operator_module.OPERATE_RIGHT, "instance")
    assert client.get("/status").status_code == 303  # a request meets the missing right
    with runtime.services.unit(Actor(name="test")) as uow:
        uow.grants.give_right(ops.user_id, operator_module.OPERATE_RIGHT, "instance")
    client.set_cookie("dirbridge_session", copied)
    assert client.get("/status").status_code == 303

    # no request in between: the sweep job ends them
    logged_in(client, ops, clock)
    copied = client.get_cookie("dirbridge_session").value
    with runtime.services.unit(Actor(name="test")) as uow:
        uow.grants.take_right(ops.user_id, operator_module.OPERATE_RIGHT, "instance")
    assert operator_sessions_sweep(runtime)["ended"] == 1
    with runtime.services.unit(Actor(name="test")) as uow:
        uow.grants.give_right(ops.user_id, operator_module.OPERATE_RIGHT, "instance")
    client.set_cookie("dirbridge_session", copied)
    assert client.get("/status").status_code == 303
    logged_in(client, ops, clock)  # a new login works
    assert client.get("/status").status_code == 200


def test_a_temporary_password_opens_only_the_form_that_replaces_it(client, runtime, ops, clock, admin_headers):
    from tests.fixtures.browser import csrf_in

    reset = client.post(f"/api/v1/users/{ops.user_id}/password-reset", headers=admin_headers)
    temporary = reset.json["temporary_password"]
    answer = login_form(client, ops.user_name, temporary, ops.code(clock.now))
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200 and 'name="new_password"' in page and "temporary" in page
    assert client.get("/status").status_code == 303  # no operator session
    assert client.get("/api/v1/users").status_code == 401
    weak = client.post("/status/password", data={"csrf": csrf_in(page), "new_password": "short",
                                                 "new_password_repeat": "short"})
    assert weak.status_code == 400 and 'name="new_password"' in weak.get_data(as_text=True)
    chosen = "Ops-Own-Password-77"
    done = client.post("/status/password", data={"csrf": csrf_in(weak.get_data(as_text=True)),
                                                 "new_password": chosen, "new_password_repeat": chosen})
    assert done.status_code == 200 and "changed" in done.get_data(as_text=True)
    clock.advance(seconds=30)
    logged = login_form(client, ops.user_name, chosen, ops.code(clock.now))
    assert logged.status_code == 303 and client.get("/status").status_code == 200


def test_the_admin_api_accepts_an_operator_session(client, runtime, ops, clock):
    assert client.get("/api/v1/users").status_code == 401
    logged_in(client, ops, clock)
    listed = client.get("/api/v1/users")
    assert listed.status_code == 200 and ops.user_name in {u["user_name"] for u in listed.json["items"]}
    body = {"name": "helpdesk", "rights": ["users.read"]}
    no_header = client.post("/api/v1/roles", json=body)
    assert no_header.status_code == 403 and no_header.json["error"]["code"] == "csrfFailed"
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/status").get_data(as_text=True))
    assert csrf
    wrong = client.post("/api/v1/roles", json=body, headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    created = client.post("/api/v1/roles", json=body, headers={"X-CSRF-Token": csrf.group(1)})
    assert created.status_code == 201, created.json
    with runtime.store.read() as session:
        actors = set(session.scalars(select(AuditEvent.actor).where(AuditEvent.action == "role.create")))
    assert actors == {f"api:operator:{ops.user_name}"}
    # A bearer header is a token login: a bad token is not rescued by the session.
    assert client.get("/api/v1/users", headers={"Authorization": "Bearer dbr_nope"}).status_code == 401


def _seed_runs(runtime) -> int:
    """A guarded sync run with a plan, and a failed job whose message holds markup."""
    with runtime.store.write() as session:
        started = utcnow()
        guarded = SyncRun(source="corp", mode="full", status="guarded", started_at=started, finished_at=started,
                          added=0, updated=1, deactivated=0, detail={
                              "guard": "the sync would remove 8 of 10 users (80.0%), more than "
                                       "deletion_guard.max_percent = 20%",
                              "would_deactivate": [{"id": "u1", "user_name": "<b>mallory</b>",
                                                    "dn": "uid=mallory,ou=people,dc=example,dc=org"}],
                              "would_delete_groups": []})
        session.add(guarded)
        session.add(JobRun(job="ldap-full:corp", replica="r1", outcome="failed", finished_at=started,
                           message="SyncNotApplied: <script>alert(1)</script>"))
        session.flush()
        return guarded.id


@pytest.fixture
def ldap_config():
    return accounts_config(ldap={"sources": [{
        "name": "corp", "url": "ldap://127.0.0.1:1", "preset": "openldap", "bind_dn": "cn=x", "bind_password": "x",
        "users_base": "ou=people,dc=example,dc=org", "groups_base": "ou=groups,dc=example,dc=org",
        "tls": {"mode": "none"}, "schedule": {"full": "1h", "incremental": None}}]})


def test_the_page_shows_a_tripped_guard_and_a_failed_job_escaped(client, runtime, ops, clock, ldap_config):
    runtime.config = runtime.services.config = runtime.config.model_copy(update={"ldap": ldap_config.ldap})
    run_id = _seed_runs(runtime)
    logged_in(client, ops, clock)
    html = client.get("/status").get_data(as_text=True)
    assert "Deletion guard tripped" in html and f'href="/status/sync-runs/{run_id}"' in html
    assert "SyncNotApplied: &lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert '<svg class="chart"' in html  # the runs chart of the source
    plan = client.get(f"/status/sync-runs/{run_id}")
    text = plan.get_data(as_text=True)
    assert plan.status_code == 200 and "&lt;b&gt;mallory&lt;/b&gt;" in text and "<b>mallory" not in text
    assert "dirbridge sync corp --approve-deletions" in text
    assert client.get("/status/sync-runs/999999").status_code == 404


def test_a_disabled_status_page_is_gone(client, runtime, ops, clock):
    with_status(runtime, enabled=False)
    assert client.get("/status").status_code == 404
    assert client.get("/status/login").status_code == 404


def test_the_chart_scales_marks_outcomes_and_escapes():
    from bridge.web.chart import RunPoint, nice_ceiling, sync_chart

    assert [nice_ceiling(v) for v in (0, 0.3, 1, 7, 12, 480)] == [1.0, 0.5, 1.0, 10.0, 20.0, 500.0]
    start = utcnow()
    runs = [RunPoint(1, "full", "ok", start, 40.0, 120, 0, 0, 0),
            RunPoint(2, "incremental", "failed", start, None, 0, 0, 0, 3),
            RunPoint(3, "full", "guarded", start, 80.0, 0, 5, 0, 0)]
    svg = str(sync_chart("<corp>", runs))
    assert svg.startswith('<svg class="chart"') and svg.endswith("</svg>")
    assert "&lt;corp&gt;" in svg and "<corp>" not in svg
    assert svg.count('fill="#c62828"') == 1 and svg.count('fill="#37474f"') == 1  # failed bar; its errors apart
    # Axes end at 100 s and 200 users: 80 s is 4/5 of the 80-unit panel, 40 s 2/5, 120 users 3/5.
    assert 'height="64.0" fill="#e08a00"' in svg and 'height="32.0" fill="#2e7d32"' in svg
    assert 'height="48.0" fill="#00acc1"' in svg and ">100 s<" in svg and ">200<" in svg  # the axis tops
    assert str(sync_chart("corp", [])) == ""


def test_the_legend_matches_the_chart_and_no_colour_means_two_things():
    """Each swatch of the legend (status.css) is the colour the chart draws (chart.py), and
    no colour stands for a status and a count at once (ok was added's green, approved was
    updated's blue)."""
    import re

    from bridge.web.chart import COUNT_COLOURS, STATUS_COLOURS
    from tests.fixtures.app import REPO

    css = (REPO / "bridge" / "web" / "static" / "status.css").read_text()
    swatches = {name: colour.lower() for kind, name, colour in
                re.findall(r"\.(s|c)-([a-z]+) \{ background: (#[0-9a-f]{6}); \}", css, re.I)}
    drawn = {**STATUS_COLOURS, **dict(COUNT_COLOURS)}
    assert swatches == {name: colour.lower() for name, colour in drawn.items()}
    assert len(set(drawn.values())) == len(drawn)
    template = (REPO / "bridge" / "web" / "templates" / "status.html").read_text()
    legend = set(re.findall(r'class="sw [sc]-([a-z]+)"', template))
    assert legend == set(drawn) - {"running"}  # every colour a finished run can have, explained


def test_needs_attention_says_what_is_wrong_now_since_when_and_what_to_do(client, runtime, ops, clock, ldap_config):
    """From the runs as they stand (the scheduler's, the API's, the CLI's alike; dry runs
    apart): failing since the first failure after the last completed run, with the latest
    reason and the next step; healthy again once a run completes, with its time."""
    from datetime import timedelta

    from bridge.store.models import SyncRun

    runtime.config = runtime.services.config = runtime.config.model_copy(update={"ldap": ldap_config.ldap})
    base = clock.now - timedelta(hours=3)

    def run(minutes: int, status: str, error: str | None = None, dry_run: bool = False) -> None:
        at = base + timedelta(minutes=minutes)
        with runtime.store.write() as session:
            session.add(SyncRun(source="corp", mode="full", status=status, dry_run=dry_run, started_at=at,
                                finished_at=at + timedelta(seconds=20), detail={"error": error} if error else {}))

    run(0, "ok")
    run(60, "failed", "cannot reach the directory of corp: ldap://dc1:389: connection refused")
    run(90, "failed", "the directory refused the bind of 'cn=svc': check bind_dn and bind_password")
    run(100, "failed", "a dry run's own trouble", dry_run=True)
    logged_in(client, ops, clock)
    html = client.get("/status").get_data(as_text=True)
    attention = html[html.index('id="attention"'):html.index('id="overview"')]
    assert "Needs attention" in attention and "LDAP source corp: failing (2 runs)" in attention
    assert "refused the bind of &#39;cn=svc&#39;" in attention and "connection refused" not in attention  # latest
    assert "a dry run" not in attention and "dirbridge sync corp" in attention
    assert (base + timedelta(minutes=60)).isoformat() in attention  # since the first failure after the last ok

    run(120, "ok")
    html = client.get("/status").get_data(as_text=True)
    attention = html[html.index('id="attention"'):html.index('id="overview"')]
    assert "Everything is working" in attention and "LDAP source corp: healthy: last successful sync" in attention
    assert (base + timedelta(minutes=120, seconds=20)).isoformat() in attention


def test_a_large_plan_is_paged(client, runtime, ops, clock):
    from bridge.store.models import SyncRun

    users = [{"id": f"u{i}", "user_name": f"user{i:05d}", "dn": f"uid=user{i:05d},dc=x"} for i in range(450)]
    with runtime.store.write() as session:
        guarded = SyncRun(source="corp", mode="full", status="guarded", started_at=clock.now, finished_at=clock.now,
                          detail={"guard": "too many", "would_deactivate": users,
                                  "would_delete_groups": [{"id": f"g{i}", "name": f"team{i:03d}", "dn": f"cn=t{i}"}
                                                          for i in range(250)]})
        session.add(guarded)
        session.flush()
        run_id = guarded.id
    logged_in(client, ops, clock)
    first = client.get(f"/status/sync-runs/{run_id}").get_data(as_text=True)
    assert "Users it would deactivate (450)" in first and "1&ndash;200 of 450" in first
    assert "user00199" in first and "user00200" not in first and 'href="?page=2"' in first
    last = client.get(f"/status/sync-runs/{run_id}?page=3").get_data(as_text=True)
    assert "401&ndash;450 of 450" in last and "user00449" in last and "user00399" not in last
    assert "page=4" not in last  # the users end here
    assert "401&ndash;450" in client.get(f"/status/sync-runs/{run_id}?page=99").get_data(as_text=True)
    assert client.get(f"/status/sync-runs/{run_id}?page=abc").status_code == 200
    both = client.get(f"/status/sync-runs/{run_id}?gpage=2").get_data(as_text=True)  # the groups' second page
    assert "team249" in both and 'href="?gpage=2&amp;page=2"' in both  # the users' next keeps the groups' page
