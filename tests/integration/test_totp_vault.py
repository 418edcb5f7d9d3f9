"""TOTP secrets sealed at rest (bridge.accounts.vault), on SQLite and PostgreSQL: the
database holds no seed an enrolment handed out; secrets stored in clear by an older
version are sealed at the next start and keep working; a key rotation re-seals them."""

from __future__ import annotations

import pyotp
from sqlalchemy import select, update

from bridge.accounts.vault import PREFIX, TotpVault
from bridge.runtime import build_runtime
from bridge.store.models import TotpCredential
from tests.fixtures.accounts import GOOD_PASSWORD, accounts_config, attempt
from tests.integration.test_accounts_login import make_user
from tests.integration.test_cli import all_text_in_database

KEY_A = "4f1e9a7c2b8d6e0f3a5c7e9b1d3f5a7c9e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f"
KEY_B = "b7d9f0a1c3e5a2c4e6b8d0f2a4c6e8b1d3f5a7c9e0b2d4f6a8c1e3b5d7f9a2c4"


def config_with(key: str | None):
    return accounts_config(policy={"totp": {"key": key}} if key else {})


def enrol(client, headers, user_id: str) -> str:
    started = client.post(f"/api/v1/users/{user_id}/totp", headers=headers).json
    confirmed = client.post(f"/api/v1/users/{user_id}/totp/confirm", headers=headers,
                            json={"code": pyotp.TOTP(started["secret"]).now()})
    assert confirmed.status_code == 200, confirmed.json
    return started["secret"]


def stored(runtime, user_id: str) -> str:
    with runtime.store.read() as session:
        return session.scalar(select(TotpCredential.secret).where(TotpCredential.user_id == user_id))


def test_the_database_holds_no_seed_and_a_rotation_reseals(client, runtime, admin_headers, db_url):
    user_id = make_user(runtime)
    secret = enrol(client, admin_headers, user_id)
    assert stored(runtime, user_id).startswith(PREFIX)
    assert secret not in all_text_in_database(db_url)

    # an older version's cleartext row: read as it is, sealed by reseal (serve runs it at start)
    with runtime.store.write() as session:
        session.execute(update(TotpCredential).where(TotpCredential.user_id == user_id).values(secret=secret))
    assert runtime.totp_vault.open(stored(runtime, user_id)) == secret
    assert runtime.totp_vault.reseal(runtime.store) == 1
    assert stored(runtime, user_id).startswith(PREFIX) and secret not in all_text_in_database(db_url)

    # rotation: the new key first, the old one still there to open; reseal; then the old one goes
    old = TotpVault([KEY_A])
    with runtime.store.write() as session:
        session.execute(update(TotpCredential).where(TotpCredential.user_id == user_id)
                        .values(secret=old.seal(secret)))
    rotating = build_runtime(config_with(f"{KEY_B},{KEY_A}").model_copy(update={"data_dir": runtime.config.data_dir}),
                             store=runtime.store)
    assert rotating.totp_vault.reseal(runtime.store) == 1
    assert TotpVault([KEY_B]).open(stored(runtime, user_id)) == secret


def test_a_dropped_key_is_a_clear_refusal_not_a_500(client, runtime, admin_headers):
    user_id = make_user(runtime)
    secret = enrol(client, admin_headers, user_id)
    with runtime.store.write() as session:  # sealed with a key this process does not have
        session.execute(update(TotpCredential).where(TotpCredential.user_id == user_id)
                        .values(secret=TotpVault([KEY_B]).seal(secret)))
    for _ in range(7):  # settled as "totp_unavailable": no code was checked, nothing counts
        answer = attempt(client, admin_headers, "bob.local", GOOD_PASSWORD, totp=pyotp.TOTP(secret).now())
        assert answer.status_code == 503 and answer.json["error"]["code"] == "totpUnavailable"
    assert runtime.totp_vault.reseal(runtime.store) == 0  # the unopenable one is left, logged; no crash
    with runtime.store.write() as session:  # the operator puts the right seal back
        session.execute(update(TotpCredential).where(TotpCredential.user_id == user_id)
                        .values(secret=runtime.totp_vault.seal(secret)))
    later = pyotp.TOTP(secret).at(__import__("time").time() + 30)
    assert attempt(client, admin_headers, "bob.local", GOOD_PASSWORD, totp=later).status_code == 200
