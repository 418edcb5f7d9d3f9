"""Directory users' passwords through dirbridge's own channels, against the real slapd with
the ppolicy overlay: the user's change (portal API and account page), a forgotten password's
link and an admin's reset (with the source's reset account), each proved by a login bind.
The directory's refusals come back plainly; a directory that does not answer leaves the
link usable and the store as it was; a source that does not allow resets gets no link."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bridge.ldap.sync import run_sync
from bridge.store.models import AccountLink, AuditEvent, User
from tests.fixtures.accounts import FakeClock, accounts_config, attempt, csrf_of
from tests.fixtures.net import free_port
from tests.fixtures.slapd import source_settings
from tests.integration.test_ldap_passwords import openldap_policy, openldap_reset_account
from tests.integration.test_selfservice_api import ask_reset, confirm_reset, drain, link_token

START, SECOND = "Start-Pass-1x", "Second-Pass-2x"


@pytest.fixture
def clock(runtime):
    runtime.clock = found = FakeClock()
    return found


@pytest.fixture
def corp(runtime, ldap_tree, smtp_sink, clock):
    """Source ``corp``: a ppolicy'd user ``dora`` (8 characters, 3 in history), resets by the
    tree's reset account; synced, so dora is a directory user of dirbridge."""
    policy = openldap_policy(ldap_tree)
    reset_dn, reset_secret = openldap_reset_account(ldap_tree)
    ldap_tree.add_user("dora", password=START, pwdPolicySubentry=policy, mail="dora@example.org")
    settings = source_settings(ldap_tree.server, ldap_tree, bind_dn=reset_dn, bind_password=reset_secret,
                               passwords={"reset": True})
    runtime.config = runtime.services.config = accounts_config(smtp_sink, ldap={"sources": [settings]})
    assert run_sync(runtime, "corp", full=True).status.value == "ok"
    return runtime


def change(client, headers, password, new):
    return client.post("/api/v1/auth/password", json={"username": "dora", "password": password,
                                                      "new_password": new, "client_ip": "198.51.100.7"},
                       headers=headers)


def test_a_directory_user_changes_the_password_in_the_directory(corp, client, admin_headers):
    short = change(client, admin_headers, START, "Ab1")
    assert short.status_code == 400 and short.json["error"]["code"] == "directoryPasswordPolicy"
    assert short.json["error"]["reason"] == "too_short"  # the directory's own word (ppolicy)
    assert "Ab1" not in short.text and "short" in short.json["error"]["message"].lower()
    assert attempt(client, admin_headers, "dora", START).status_code == 200  # unchanged
    done = change(client, admin_headers, START, SECOND)
    assert done.status_code == 200, done.json
    assert attempt(client, admin_headers, "dora", SECOND).status_code == 200
    assert attempt(client, admin_headers, "dora", START).status_code == 401
    again = change(client, admin_headers, SECOND, START)  # in the directory's history
    assert again.status_code == 400 and "used before" in again.json["error"]["message"]
    with corp.store.read() as session:
        events = [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.target_name == "dora"))]
        assert "user.password-change" in events
        assert not [e for e in session.scalars(select(AuditEvent)) if SECOND in str(e.changes)]
        assert session.scalar(select(User).where(User.user_name == "dora")).password_hash is None  # none kept


def test_the_account_page_changes_it_too(corp, client, admin_headers):
    login = client.get("/account/login")
    client.post("/account/login", data={"csrf": csrf_of(login.text), "username": "dora", "password": START})
    form = client.get("/account/password")
    assert "directory checks the new password by its own rules" in form.text
    done = client.post("/account/password", data={"csrf": csrf_of(form.text), "current_password": START,
                                                  "new_password": SECOND, "new_password_repeat": SECOND})
    assert done.status_code == 200 and "Your password is changed" in done.text
    assert attempt(client, admin_headers, "dora", SECOND).status_code == 200


def test_a_forgotten_directory_password_is_reset_through_the_link(corp, client, admin_headers, smtp_sink):
    assert ask_reset(client, admin_headers, "dora@example.org").status_code == 202
    token = link_token(smtp_sink.wait_for(1)[0].text, "/account/reset")
    short = confirm_reset(client, admin_headers, token, "Ab1")
    assert short.status_code == 400 and short.json["error"]["code"] == "directoryPasswordPolicy"
    done = confirm_reset(client, admin_headers, token, SECOND)  # the refusal left the link usable
    assert done.status_code == 200
    assert attempt(client, admin_headers, "dora", SECOND).status_code == 200
    assert confirm_reset(client, admin_headers, token, "Third-Pass-3x").status_code == 410


def test_a_directory_that_does_not_answer_leaves_the_link_usable(corp, client, admin_headers, smtp_sink):
    ask_reset(client, admin_headers, "dora")
    token = link_token(smtp_sink.wait_for(1)[0].text, "/account/reset")
    sources = [s.model_copy(update={"url": [f"ldap://127.0.0.1:{free_port()}"]}) for s in corp.config.ldap.sources]
    working = corp.config
    corp.config = corp.services.config = working.model_copy(
        update={"ldap": working.ldap.model_copy(update={"sources": sources})})
    down = confirm_reset(client, admin_headers, token, SECOND)
    assert down.status_code == 503 and down.json["error"]["code"] == "directoryUnavailable"
    assert down.headers["Retry-After"]
    with corp.store.read() as session:
        assert session.scalar(select(AccountLink)).used_at is None
    corp.config = corp.services.config = working
    assert confirm_reset(client, admin_headers, token, SECOND).status_code == 200


def test_an_admin_resets_a_directory_password(corp, client, admin_headers):
    reset = client.post("/api/v1/users/dora/password-reset", headers=admin_headers)
    assert reset.status_code == 200
    temporary = reset.json["temporary_password"]
    assert attempt(client, admin_headers, "dora", temporary).status_code == 200
    assert attempt(client, admin_headers, "dora", START).status_code == 401


def test_a_source_without_resets_mails_whom_to_ask(corp, client, admin_headers, smtp_sink, runtime):
    sources = [s.model_copy(update={"passwords": s.passwords.model_copy(update={"reset": False})})
               for s in corp.config.ldap.sources]
    corp.config = corp.services.config = corp.config.model_copy(
        update={"ldap": corp.config.ldap.model_copy(update={"sources": sources})})
    assert ask_reset(client, admin_headers, "dora").status_code == 202
    drain(runtime)
    [mail] = smtp_sink.messages
    assert "cannot reset it" in mail.text and "/account/reset" not in mail.text
    refused = client.post("/api/v1/users/dora/password-reset", headers=admin_headers)
    assert refused.status_code == 409
