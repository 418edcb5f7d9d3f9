"""POST /api/v1/auth/login on SQLite and PostgreSQL: passwords, lockout per account and
per client IP, admin unlock, the account's state, TOTP with replay and recovery codes,
and the LDAP bind of directory users against the real slapd."""

from __future__ import annotations

import statistics
import time

import pyotp
import pytest
from sqlalchemy import select

from bridge.accounts import totp
from bridge.accounts.context import context_for
from bridge.accounts.credentials import set_new_password
from bridge.services import Actor
from bridge.store.models import AuditEvent, LoginAttempt, User
from tests.fixtures.accounts import GOOD_PASSWORD, FakeClock, accounts_config, attempt
from tests.fixtures.net import free_port

OTHER_IP = "203.0.113.9"


@pytest.fixture
def config():
    return accounts_config()


@pytest.fixture
def clock(runtime):
    runtime.clock = found = FakeClock()
    return found


def make_user(runtime, user_name="bob.local", password=GOOD_PASSWORD, **fields):
    ctx = context_for(runtime)
    with runtime.services.unit(Actor(name="test")) as uow:
        user = uow.users.create(user_name=user_name, email=f"{user_name}@example.org", **fields)
        if password is not None:
            set_new_password(ctx, uow, user, password)
        return user.id


def user_row(runtime, user_id) -> User:
    with runtime.store.read() as session:
        return session.get(User, user_id)


def test_a_good_password_logs_in_and_every_attempt_is_audited(runtime, client, admin_headers, clock):
    user_id = make_user(runtime)
    ok = attempt(client, admin_headers, "BOB.local", GOOD_PASSWORD)  # user names are case-insensitive
    assert ok.status_code == 200, ok.json
    assert ok.json["user"]["id"] == user_id and ok.json["roles"] == []
    assert user_row(runtime, user_id).last_login_at == clock.now
    bad = attempt(client, admin_headers, "bob.local", "Wrong-Password-1")
    assert bad.status_code == 401
    with runtime.store.read() as session:
        events = [(e.action, e.changes["reason"][1], e.changes["client_ip"][1])
                  for e in session.scalars(select(AuditEvent).where(AuditEvent.action.like("login.%"))
                                           .order_by(AuditEvent.id))]
        assert events == [("login.ok", "ok", "198.51.100.7"), ("login.failed", "bad_password", "198.51.100.7")]
        assert not [e for e in session.scalars(select(AuditEvent)) if GOOD_PASSWORD in str(e.changes)]


def test_a_wrong_user_and_a_wrong_password_look_the_same(runtime, client, admin_headers, clock):
    make_user(runtime)
    wrong_password = attempt(client, admin_headers, "bob.local", "Wrong-Password-1")
    wrong_user = attempt(client, admin_headers, "nobody.here", "Wrong-Password-1")
    assert wrong_password.status_code == wrong_user.status_code == 401
    assert wrong_password.json == wrong_user.json == {
        "error": {"code": "invalidCredentials", "message": "wrong user name or password", "field": None}}

    def timed(name: str) -> float:
        samples = []
        for _ in range(7):
            started = time.perf_counter()
            attempt(client, admin_headers, name, "Wrong-Password-1", ip=f"192.0.2.{len(samples)}")
            samples.append(time.perf_counter() - started)
            runtime.clock.advance(days=2)  # stay clear of the lockout
        return statistics.median(samples)

    known, unknown = timed("bob.local"), timed("nobody.here")
    assert 0.5 < unknown / known < 2.0, (known, unknown)


def test_five_failures_lock_the_account_for_24_hours(runtime, client, admin_headers, clock):
    user_id = make_user(runtime)
    for _ in range(5):
        assert attempt(client, admin_headers, "bob.local", "Wrong-Password-1").status_code == 401
    locked = attempt(client, admin_headers, "bob.local", GOOD_PASSWORD)
    assert locked.status_code == 423 and locked.json["error"]["code"] == "locked"
    assert locked.json["locked_until"].startswith("2030-03-05T09:00")
    row = user_row(runtime, user_id)
    assert (row.lock_reason, row.locked_until) == ("failures", clock.now.replace(day=5))
    clock.advance(hours=23, minutes=59)
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD).status_code == 423
    clock.advance(minutes=1)
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD).status_code == 200


def test_an_unknown_name_locks_like_a_real_one(runtime, client, admin_headers, clock):
    make_user(runtime)
    for name in ("bob.local", "nobody.here"):
        for _ in range(5):
            attempt(client, admin_headers, name, "Wrong-Password-1")
    real, unknown = (attempt(client, admin_headers, n, "x") for n in ("bob.local", "nobody.here"))
    assert real.status_code == unknown.status_code == 423
    assert real.json == unknown.json


def test_failures_count_within_the_window_and_a_login_starts_afresh(runtime, client, admin_headers, clock):
    make_user(runtime)
    for _ in range(4):
        attempt(client, admin_headers, "bob.local", "Wrong-Password-1")
    clock.advance(hours=24, seconds=1)  # policy.lockout.window_hours
    attempt(client, admin_headers, "bob.local", "Wrong-Password-1")
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD).status_code == 200
    for _ in range(4):
        attempt(client, admin_headers, "bob.local", "Wrong-Password-1")
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD).status_code == 200


def test_an_admin_unlocks_early(runtime, client, admin_headers, clock):
    user_id = make_user(runtime)
    for _ in range(5):
        attempt(client, admin_headers, "bob.local", "Wrong-Password-1")
    unlocked = client.post(f"/api/v1/users/{user_id}/unlock", headers=admin_headers)
    assert unlocked.status_code == 200 and unlocked.json["unlocked"] is True
    assert user_row(runtime, user_id).lock_reason is None
    attempt(client, admin_headers, "bob.local", "Wrong-Password-1")  # the count started afresh
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD).status_code == 200


def test_the_lockout_release_job_reopens_expired_locks(runtime, client, admin_headers, clock):
    from bridge.accounts.jobs import lockout_release

    user_id = make_user(runtime)
    for _ in range(5):
        attempt(client, admin_headers, "bob.local", "Wrong-Password-1")
    assert lockout_release(runtime) == {"released": 0}
    clock.advance(hours=24)
    assert lockout_release(runtime) == {"released": 1}
    assert user_row(runtime, user_id).locked_until is None


def test_old_login_attempts_are_pruned_and_a_running_lock_keeps_its_own(runtime, client, admin_headers, clock,
                                                                         monkeypatch):
    """Each failed login, an unknown name's too, adds a row: the prune job deletes those
    past what the lockout looks back on, in chunks, and a lock still running holds."""
    from sqlalchemy import func, select

    from bridge.accounts import jobs
    from bridge.store.models import LoginAttempt

    monkeypatch.setattr(jobs, "PRUNE_CHUNK", 7)  # several transactions
    make_user(runtime)
    for n in range(20):
        attempt(client, admin_headers, f"nobody.{n}", "Wrong-Password-1", ip=f"192.0.2.{n + 1}")
    clock.advance(hours=200)  # past twice the window and the lock (24 h + 24 h)
    for _ in range(5):
        attempt(client, admin_headers, "bob.local", "Wrong-Password-1")
    assert jobs.login_attempts_prune(runtime) == {"deleted": 20}
    with runtime.store.read() as session:
        assert session.scalar(select(func.count()).select_from(LoginAttempt)) == 5  # the lock's failures
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD).status_code == 423


def test_25_failures_from_one_address_lock_that_address(runtime, client, admin_headers, clock):
    make_user(runtime)
    for n in range(25):
        assert attempt(client, admin_headers, f"guess.{n:02d}", "Wrong-Password-1").status_code == 401
    from_there = attempt(client, admin_headers, "bob.local", GOOD_PASSWORD)
    assert from_there.status_code == 423 and "this address" in from_there.json["error"]["message"]
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD, ip=OTHER_IP).status_code == 200
    lifted = client.post("/api/v1/auth/ip-unlock", json={"client_ip": "198.51.100.7"}, headers=admin_headers)
    assert lifted.status_code == 204
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD).status_code == 200


def test_one_address_in_any_spelling_is_one_address_and_an_unlock_lifts_it(runtime, client, admin_headers, clock):
    """Before, "10.10.10.10 " locked an address of its own that ip-unlock could not lift."""
    make_user(runtime)
    spellings = ["203.0.113.5", " 203.0.113.5", "203.0.113.5 ", "::ffff:203.0.113.5", "::FFFF:cb00:7105"]
    from bridge.web.api.auth import client_address

    assert client_address("fe80::1%eth0") == client_address("FE80::0:1%x") == "fe80::1"  # a zone names no host
    for n in range(25):
        assert attempt(client, admin_headers, f"guess.{n:02d}", "Wrong-Password-1",
                       ip=spellings[n % len(spellings)]).status_code == 401
    for ip in spellings:
        assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD, ip=ip).status_code == 423
    lifted = client.post("/api/v1/auth/ip-unlock", json={"client_ip": "::ffff:203.0.113.5 "}, headers=admin_headers)
    assert lifted.status_code == 204
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD, ip=" 203.0.113.5").status_code == 200


@pytest.mark.parametrize("bad", ["10.10.10.10x", "localhost", "300.1.1.1", "", "10.0.0.0/8", "[::1]"])
def test_a_client_ip_that_is_no_address_is_refused_naming_the_field(runtime, client, admin_headers, bad):
    answer = attempt(client, admin_headers, "bob.local", "whatever", ip=bad)
    assert answer.status_code == 422 and answer.json["error"]["field"] == "client_ip", answer.json
    unlock = client.post("/api/v1/auth/ip-unlock", json={"client_ip": bad}, headers=admin_headers)
    assert unlock.status_code == 422


def test_the_accounts_own_state_is_told_only_with_the_right_password(runtime, client, admin_headers, clock):
    make_user(runtime, "api.robot", access_type="api")
    make_user(runtime, "gone.user", active=False)
    make_user(runtime, "office.only", ip_allowlist=["10.1.0.0/16", "192.0.2.4"])
    for name, code in (("api.robot", "interactiveLoginRefused"), ("gone.user", "accountInactive"),
                       ("office.only", "ipNotAllowed")):
        assert attempt(client, admin_headers, name, "Wrong-Password-1").status_code == 401
        refused = attempt(client, admin_headers, name, GOOD_PASSWORD)
        assert (refused.status_code, refused.json["error"]["code"]) == (403, code)
    assert attempt(client, admin_headers, "office.only", GOOD_PASSWORD, ip="10.1.200.3").status_code == 200
    assert attempt(client, admin_headers, "office.only", GOOD_PASSWORD, ip="192.0.2.4").status_code == 200


def test_an_invited_user_without_a_password_cannot_log_in(runtime, client, admin_headers, clock):
    make_user(runtime, password=None)
    refused = attempt(client, admin_headers, "bob.local", "")
    assert refused.status_code == 401 and refused.json["error"]["code"] == "invalidCredentials"
    with runtime.store.read() as session:
        assert session.scalar(select(LoginAttempt.reason).order_by(LoginAttempt.id.desc())) == "bad_password"


def test_totp_replay_drift_and_recovery_codes(runtime, client, admin_headers, clock):
    user_id = make_user(runtime)
    enrol = client.post(f"/api/v1/users/{user_id}/totp", headers=admin_headers)
    assert enrol.status_code == 201
    secret = enrol.json["secret"]
    assert enrol.json["otpauth_uri"].startswith("otpauth://totp/dirbridge:bob.local?secret=")
    assert enrol.json["qr_svg"].startswith("<svg")
    # Not confirmed yet: the password alone still logs in.
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD).status_code == 200
    code = pyotp.TOTP(secret).at(clock.now)
    bad = client.post(f"/api/v1/users/{user_id}/totp/confirm", json={"code": "123456"}, headers=admin_headers)
    assert bad.status_code == 400 and bad.json["error"]["code"] == "totpInvalid"
    confirmed = client.post(f"/api/v1/users/{user_id}/totp/confirm", json={"code": code}, headers=admin_headers)
    assert confirmed.status_code == 200
    codes = confirmed.json["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10

    required = attempt(client, admin_headers, "bob.local", GOOD_PASSWORD)
    assert required.status_code == 401 and required.json["totp_required"] is True
    replay = attempt(client, admin_headers, "bob.local", GOOD_PASSWORD, code)  # used for the confirmation
    assert replay.status_code == 401 and replay.json["error"]["code"] == "totpInvalid"
    clock.advance(seconds=30)
    late = pyotp.TOTP(secret).at(clock.now, counter_offset=-1)  # one step of drift: accepted
    assert late == code
    next_code = pyotp.TOTP(secret).at(clock.now)
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD, next_code).status_code == 200
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD, next_code).status_code == 401  # replay
    clock.advance(seconds=60)
    too_early = pyotp.TOTP(secret).at(clock.now, counter_offset=2)
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD, too_early).status_code == 401
    ahead = pyotp.TOTP(secret).at(clock.now, counter_offset=1)
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD, ahead).status_code == 200

    recovery = attempt(client, admin_headers, "bob.local", GOOD_PASSWORD, codes[0].lower().replace("-", " "))
    assert recovery.status_code == 200 and recovery.json["recovery_codes_left"] == 9
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD, codes[0]).status_code == 401
    wrong_password = attempt(client, admin_headers, "bob.local", "Wrong-Password-1", codes[1])
    assert wrong_password.status_code == 401 and wrong_password.json["error"]["code"] == "invalidCredentials"
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD, codes[1]).status_code == 200

    assert client.delete(f"/api/v1/users/{user_id}/totp", headers=admin_headers).status_code == 204
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD).status_code == 200
    with runtime.store.read() as session:  # neither the secret nor a code in the audit log
        logged = " ".join(str(e.changes) for e in session.scalars(select(AuditEvent)))
    assert secret not in logged and not any(c in logged for c in codes)


def test_wrong_totp_codes_count_towards_the_lockout(runtime, client, admin_headers, clock):
    user_id = make_user(runtime)
    secret = client.post(f"/api/v1/users/{user_id}/totp", headers=admin_headers).json["secret"]
    client.post(f"/api/v1/users/{user_id}/totp/confirm", json={"code": pyotp.TOTP(secret).at(clock.now)},
                headers=admin_headers)
    for _ in range(5):
        assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD, "000000").status_code == 401
    clock.advance(seconds=30)
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD,
                   pyotp.TOTP(secret).at(clock.now)).status_code == 423


def test_admins_must_enrol_when_the_policy_says_so(runtime, client, admin_headers, clock):
    runtime.config = runtime.services.config = accounts_config(policy={"totp": {"required_for_admins": True}})
    make_user(runtime, "root.admin", access_type="admin")
    ok = attempt(client, admin_headers, "root.admin", GOOD_PASSWORD)
    assert ok.status_code == 200 and ok.json["totp_enrolment_required"] is True


def test_recovery_code_text_is_checked_not_guessed():
    codes = totp.new_recovery_codes()
    assert all(totp.looks_like_recovery_code(c) for c in codes)
    assert totp.hash_recovery_code(codes[0]) == totp.hash_recovery_code(codes[0].lower().replace("-", ""))


@pytest.fixture
def ldap_runtime(runtime, slapd):
    from bridge.config import load_config_data

    source = {"name": "corp", "url": slapd.url, "bind_dn": slapd.admin_dn, "bind_password": slapd.admin_password,
              "users_base": slapd.users_base, "groups_base": slapd.groups_base, "tls": {"mode": "none"}}
    runtime.config = runtime.services.config = load_config_data(
        {"policy": {"password": {"hash_time_cost": 1, "hash_memory_kib": 8192, "hash_parallelism": 1}},
         "ldap": {"sources": [source]}})
    with runtime.services.unit(Actor.ldap_sync("corp")) as uow:
        for uid in ("alice", "jmueller"):
            uow.users.create(user_name=uid, source_id=f"entry-{uid}", ldap_dn=slapd.user_dns[uid],
                             email=f"{uid}@example.org")
    return runtime


def test_directory_users_log_in_by_ldap_bind(ldap_runtime, slapd, client, admin_headers, clock):
    ok = attempt(client, admin_headers, "alice", slapd.passwords["alice"])
    assert ok.status_code == 200 and ok.json["user"]["source"] == "ldap:corp"
    umlauts = attempt(client, admin_headers, "jmueller", slapd.passwords["jmueller"])  # DN and password non-ASCII
    assert umlauts.status_code == 200
    wrong = attempt(client, admin_headers, "alice", "not-her-password")
    assert wrong.status_code == 401 and wrong.json["error"]["code"] == "invalidCredentials"
    for _ in range(4):
        attempt(client, admin_headers, "alice", "not-her-password")
    assert attempt(client, admin_headers, "alice", slapd.passwords["alice"]).status_code == 423


def test_directory_users_get_no_local_password(ldap_runtime, client, admin_headers, clock):
    with ldap_runtime.store.read() as session:
        alice = session.scalar(select(User).where(User.user_name_key == "alice"))
    refused = client.post(f"/api/v1/users/{alice.id}/password-reset", headers=admin_headers)
    # the source does not allow resets (passwords.reset): the directory's administrators reset it
    assert refused.status_code == 409 and "directory user" in refused.json["error"]["message"]
    invited = client.post("/api/v1/invitations", json={"user_id": alice.id}, headers=admin_headers)
    assert invited.status_code == 400 and "directory user" in invited.json["error"]["message"]


def test_a_source_url_that_refuses_connections_costs_a_login_nothing(ldap_runtime, slapd, client, admin_headers,
                                                                     clock):
    """Each URL in turn, within login_timeout: a closed port fails at once and the next URL
    answers (ldap3's server pool slept 10 s after a round where none answered)."""
    closed = f"ldap://127.0.0.1:{free_port()}"
    sources = [s.model_copy(update={"url": [closed, slapd.url]}) for s in ldap_runtime.config.ldap.sources]
    ldap_runtime.config = ldap_runtime.services.config = ldap_runtime.config.model_copy(
        update={"ldap": ldap_runtime.config.ldap.model_copy(update={"sources": sources})})
    started = time.monotonic()
    assert attempt(client, admin_headers, "alice", slapd.passwords["alice"]).status_code == 200
    assert time.monotonic() - started < 1.5
    only_closed = [s.model_copy(update={"url": [closed]}) for s in sources]
    ldap_runtime.config = ldap_runtime.services.config = ldap_runtime.config.model_copy(
        update={"ldap": ldap_runtime.config.ldap.model_copy(update={"sources": only_closed})})
    started = time.monotonic()
    down = attempt(client, admin_headers, "alice", slapd.passwords["alice"])
    assert down.status_code == 503 and time.monotonic() - started < 1.5
