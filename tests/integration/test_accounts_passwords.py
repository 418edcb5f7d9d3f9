"""The password's life on SQLite and PostgreSQL: history, admin reset to a temporary
password changed at the first login, maximum age with its warning mail and lock,
and rehashing when the argon2 parameters change."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from bridge.accounts.context import context_for
from bridge.accounts.credentials import set_new_password
from bridge.accounts.jobs import password_expiry
from bridge.accounts.passwords import needs_rehash
from bridge.services import Actor
from bridge.store.models import AuditEvent, User
from tests.fixtures.accounts import GOOD_PASSWORD, FakeClock, accounts_config, attempt
from tests.fixtures.app import run_cli

POLICY = {"password": {"history": 3, "max_age_days": 90, "warn_days": 7}}


@pytest.fixture
def config(smtp_sink):
    return accounts_config(smtp_sink, policy=POLICY)


@pytest.fixture
def clock(runtime):
    runtime.clock = found = FakeClock()
    return found


def make_user(runtime, password=GOOD_PASSWORD, **fields) -> str:
    with runtime.services.unit(Actor(name="test")) as uow:
        user = uow.users.create(user_name="dora.local", email="dora@example.org", **fields)
        set_new_password(context_for(runtime), uow, user, password)
        return user.id


def change(client, headers, current, new, **extra):
    return client.post("/api/v1/auth/password", json={"username": "dora.local", "password": current,
                                                      "new_password": new, "client_ip": "198.51.100.7", **extra},
                       headers=headers)


def test_the_last_passwords_may_not_come_back(runtime, client, admin_headers, clock):
    make_user(runtime, "Password-Zero-0")
    for n in (1, 2, 3):
        assert change(client, admin_headers, f"Password-{['Zero', 'One', 'Two'][n - 1]}-{n - 1}",
                      f"Password-{['One', 'Two', 'Three'][n - 1]}-{n}").status_code == 200
    # history = 3: the current one and the two before it are refused, the oldest is free again
    for old in ("Password-Three-3", "Password-Two-2", "Password-One-1"):
        refused = change(client, admin_headers, "Password-Three-3", old)
        assert refused.status_code == 400 and "used recently" in refused.json["error"]["message"]
    assert change(client, admin_headers, "Password-Three-3", "Password-Zero-0").status_code == 200
    weak = change(client, admin_headers, "Password-Zero-0", "weak")
    assert weak.status_code == 400 and weak.json["error"]["code"] == "passwordPolicy"
    wrong = change(client, admin_headers, "Not-The-Password-1", "Brand-New-Pass-9")
    assert wrong.status_code == 401


def test_an_admin_reset_gives_a_temporary_password_to_change_at_first_login(runtime, client, admin_headers, clock):
    user_id = make_user(runtime)
    reset = client.post(f"/api/v1/users/{user_id}/password-reset", headers=admin_headers)
    assert reset.status_code == 200 and reset.headers["Cache-Control"] == "no-store"
    temporary = reset.json["temporary_password"]
    assert attempt(client, admin_headers, "dora.local", GOOD_PASSWORD).status_code == 401
    first = attempt(client, admin_headers, "dora.local", temporary)
    assert first.status_code == 200 and first.json["password_change_required"] is True
    changed = change(client, admin_headers, temporary, "Chosen-By-Her-44")
    assert changed.status_code == 200 and changed.json["password_change_required"] is False
    assert attempt(client, admin_headers, "dora.local", "Chosen-By-Her-44").json["password_change_required"] is False


def test_old_passwords_warn_by_mail_once_then_lock(runtime, client, admin_headers, smtp_sink, clock):
    user_id = make_user(runtime, preferred_language="de")
    clock.advance(days=82)
    assert password_expiry(runtime) == {"locked": 0, "warned": 0, "mail_errors": 0}
    clock.advance(days=1)  # 7 days before the 90
    assert password_expiry(runtime) == {"locked": 0, "warned": 1, "mail_errors": 0}
    [mail] = smtp_sink.wait_for(1)
    assert mail.envelope_to == ("dora@example.org",) and "läuft am 02.06.2030 09:00 UTC ab" in mail.subject
    clock.advance(days=1)
    assert password_expiry(runtime)["warned"] == 0  # once per password
    assert attempt(client, admin_headers, "dora.local", GOOD_PASSWORD).status_code == 200
    clock.advance(days=6)
    wrong = attempt(client, admin_headers, "dora.local", "Wrong-Password-1")
    assert wrong.status_code == 401  # the state is told only with the right password
    expired = attempt(client, admin_headers, "dora.local", GOOD_PASSWORD)
    assert expired.status_code == 423 and expired.json["error"]["code"] == "passwordExpired"
    with runtime.store.read() as session:
        assert session.get(User, user_id).lock_reason == "password_expired"
    assert password_expiry(runtime)["locked"] == 0  # locked at the login already
    temporary = client.post(f"/api/v1/users/{user_id}/password-reset", headers=admin_headers).json[
        "temporary_password"]
    assert attempt(client, admin_headers, "dora.local", temporary).status_code == 200


def test_the_warning_is_not_repeated_when_the_audit_log_is_trimmed(runtime, smtp_sink, clock):
    """Whether the warning went out is the user's state, not an audit event that retention deletes."""
    make_user(runtime)
    clock.advance(days=83)
    assert password_expiry(runtime)["warned"] == 1
    smtp_sink.wait_for(1)
    with runtime.store.write() as session:
        session.execute(delete(AuditEvent))
    clock.advance(days=1)
    assert password_expiry(runtime)["warned"] == 0
    assert len(smtp_sink.messages) == 1


def test_the_job_locks_expired_passwords(runtime, clock, client, admin_headers):
    user_id = make_user(runtime)
    clock.advance(days=91)
    assert password_expiry(runtime)["locked"] == 1
    with runtime.store.read() as session:
        assert session.get(User, user_id).lock_reason == "password_expired"
    unlocked = client.post(f"/api/v1/users/{user_id}/unlock", headers=admin_headers)
    assert unlocked.json["unlocked"] is True


def test_a_login_rehashes_with_new_parameters(runtime, client, admin_headers, clock):
    user_id = make_user(runtime)
    with runtime.store.read() as session:
        before = session.get(User, user_id).password_hash
    stronger = accounts_config(policy={"password": {"hash_time_cost": 2}})
    runtime.config = runtime.services.config = stronger
    assert needs_rehash(stronger.policy.password, before)
    assert attempt(client, admin_headers, "dora.local", GOOD_PASSWORD).status_code == 200
    with runtime.store.read() as session:
        after = session.get(User, user_id)
    assert after.password_hash != before and not needs_rehash(stronger.policy.password, after.password_hash)
    assert after.password_changed_at == clock.now  # the same password: its age stays
    assert attempt(client, admin_headers, "dora.local", GOOD_PASSWORD).status_code == 200


def test_cli_unlock_and_reset_password(tmp_path):
    config = tmp_path / "dirbridge.toml"
    config.write_text('data_dir = "data"\n[policy.password]\nhash_time_cost = 1\nhash_memory_kib = 8192\n'
                      'hash_parallelism = 1\n')
    args = ("--config", str(config))
    assert run_cli("user", "create", "eve.local", "--email", "eve@example.org", *args, cwd=tmp_path).returncode == 0
    reset = run_cli("user", "reset-password", "eve.local", *args, cwd=tmp_path)
    assert reset.returncode == 0, reset.stderr
    temporary = reset.stdout.strip()
    assert len(temporary) >= 16 and "shown once" in reset.stderr
    unlock = run_cli("user", "unlock", "eve.local", *args, cwd=tmp_path)
    assert unlock.returncode == 0 and "was not locked" in unlock.stdout
    missing = run_cli("user", "unlock", "nobody.x", *args, cwd=tmp_path)
    assert missing.returncode == 1 and "no user named 'nobody.x'" in missing.stderr
    from bridge.config import load_config
    from bridge.store import Store

    store = Store(load_config(config).database_url)
    with store.read() as session:
        row = session.scalar(select(User).where(User.user_name_key == "eve.local"))
        assert row.must_change_password and row.password_hash.startswith("$argon2id$")
    store.dispose()
