"""Squatting: an IdP creates the userName a directory user will have, before the directory
sync brings that user (issue "Trust boundaries between sources"). The collision is a
conflict naming both sources (status page, metric, sync summary); ``[[ownership.rules]]``
decides who keeps the name; the squatter never gains the directory user's logins or rights.
Real slapd, the SCIM and login endpoints over HTTP."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bridge.clock import utcnow
from bridge.ldap.sync import run_sync
from bridge.store.models import GroupUserMember, SourceConflict, TotpCredential, User
from tests.fixtures.accounts import FakeClock, accounts_config, attempt
from tests.fixtures.app import run_cli
from tests.fixtures.browser import login_form, make_operator
from tests.fixtures.slapd import source_settings
from tests.integration.test_scim_http import CORE, scim_for

DIRECTORY_PASSWORD = "Directory-Pass-42x"
SQUATTER_PASSWORD = "Borrowed-Keys-42x!"
TAKE_OVER = [{"source": "ldap:corp", "may_take_over": ["scim:idp2"]}]


@pytest.fixture
def config(request, ldap_tree, smtp_sink):
    rules = getattr(request, "param", [])
    return accounts_config(
        smtp_sink,
        scim={"clients": {"idp2": {"passwords": True}}},
        ownership={"rules": rules},
        ldap={"sources": [source_settings(ldap_tree.server, ldap_tree)]})


@pytest.fixture
def idp2(client, runtime):
    return scim_for(client, runtime, "idp2")


@pytest.fixture
def squatted(idp2, ldap_tree):
    """idp2 has created ``newhire`` with its own password; the directory then gets the
    real ``newhire``, in the group ``Finance``."""
    made = idp2.post("/Users", {"schemas": [CORE], "userName": "newhire", "password": SQUATTER_PASSWORD,
                                "emails": [{"value": "squatter@example.net", "primary": True}]})
    assert made.status_code == 201, made.text
    dn = ldap_tree.add_user("newhire", password=DIRECTORY_PASSWORD, mail="newhire@example.org")
    ldap_tree.add_group("Finance", [dn])
    return made.json["id"]


def conflicts(runtime) -> list[SourceConflict]:
    with runtime.store.read() as session:
        return list(session.scalars(select(SourceConflict).where(SourceConflict.resolved_at.is_(None))))


def in_finance(runtime, user_id: str) -> bool:
    with runtime.store.read() as session:
        return session.scalar(select(GroupUserMember).where(GroupUserMember.user_id == user_id)) is not None


def test_without_a_rule_the_collision_is_a_conflict_and_the_squatter_gains_nothing(
        client, runtime, admin_headers, squatted, ldap_tree):
    result = run_sync(runtime, "corp")
    assert result.counts.errors == 1
    [error] = result.errors
    assert "newhire" in error and "ldap:corp" in error and "scim:idp2" in error

    [conflict] = conflicts(runtime)
    assert (conflict.kind, conflict.source, conflict.holder, conflict.subject) == (
        "user_name", "ldap:corp", "scim:idp2", "newhire")
    run_sync(runtime, "corp")  # seen again: counted, not opened twice
    [conflict] = conflicts(runtime)
    assert conflict.count == 2

    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'dirbridge_conflicts_open{kind="user_name"} 1.0' in metrics

    # The directory user's password opens nothing; the squatter's account stays its own
    # and is in none of the directory's groups.
    assert attempt(client, admin_headers, "newhire", DIRECTORY_PASSWORD).status_code == 401
    with runtime.store.read() as session:
        squatter = session.get(User, squatted)
    assert squatter.source == "scim:idp2" and squatter.ldap_dn is None
    assert not in_finance(runtime, squatted)


@pytest.mark.parametrize("config", [TAKE_OVER], indirect=True)
def test_a_rule_gives_the_directory_the_name_and_ends_the_squatters_credentials(
        client, runtime, admin_headers, squatted, ldap_tree):
    assert attempt(client, admin_headers, "newhire", SQUATTER_PASSWORD).status_code == 200
    with runtime.store.write() as session:  # the squatter enrolled TOTP, too
        session.add(TotpCredential(user_id=squatted, secret="JBSWY3DPEHPK3PXP"))

    result = run_sync(runtime, "corp")
    assert result.status == "ok" and result.counts.errors == 0, result.errors
    with runtime.store.read() as session:
        user = session.get(User, squatted)
        assert session.get(TotpCredential, squatted) is None
    assert user.source == "ldap:corp" and user.password_hash is None and user.ldap_dn
    assert in_finance(runtime, squatted)

    assert attempt(client, admin_headers, "newhire", SQUATTER_PASSWORD).status_code == 401
    assert attempt(client, admin_headers, "newhire", DIRECTORY_PASSWORD).status_code == 200
    assert conflicts(runtime) == []


@pytest.mark.parametrize("spelling", ["NewHire", "newhire ", "ｎewhire", "new\u200bhire"])
def test_a_squatter_cannot_dodge_the_collision_by_spelling(client, runtime, admin_headers, ldap_tree, idp2,
                                                           spelling):
    """The directory's ``newhire`` is synced first; an IdP's look-alike is refused (409,
    saying nothing of whose the name is) and the refusal is a conflict."""
    ldap_tree.add_user("newhire", password=DIRECTORY_PASSWORD, mail="newhire@example.org")
    assert run_sync(runtime, "corp").status == "ok"
    made = idp2.post("/Users", {"schemas": [CORE], "userName": spelling, "password": SQUATTER_PASSWORD})
    assert made.status_code == 409 and made.json["scimType"] == "uniqueness"
    assert "ldap" not in made.text and "corp" not in made.text
    [conflict] = conflicts(runtime)
    assert (conflict.source, conflict.holder) == ("scim:idp2", "ldap:corp")
    assert attempt(client, admin_headers, "newhire", DIRECTORY_PASSWORD).status_code == 200


def test_the_status_page_names_both_sources(client, runtime, squatted):
    runtime.clock = clock = FakeClock(utcnow().replace(microsecond=0))
    ops = make_operator(runtime)
    clock.advance(seconds=30)  # the next TOTP step: the enrolment used this one
    run_sync(runtime, "corp")
    assert login_form(client, ops.user_name, ops.password, ops.code(clock.now)).status_code == 303
    page = client.get("/status").get_data(as_text=True)
    assert 'id="conflicts"' in page and "ldap:corp" in page and "scim:idp2" in page and "newhire" in page


def test_conflicts_close_when_the_holder_lets_the_name_go_and_an_operator_closes_the_rest(
        client, runtime, admin_headers, idp2, squatted, tmp_path):
    run_sync(runtime, "corp")
    [conflict] = conflicts(runtime)
    assert idp2.delete(f"/Users/{squatted}").status_code == 204  # the squatter lets the name go
    assert conflicts(runtime) == []
    result = run_sync(runtime, "corp")
    assert result.counts.errors == 0 and result.counts.added == 1

    # One the holder keeps: listed and closed by an operator on the command line.
    admin = client.post("/api/v1/users", headers=admin_headers, json={"user_name": "held.name",
                                                                      "email": "held@example.org"})
    assert admin.status_code == 201
    assert idp2.post("/Users", {"schemas": [CORE], "userName": "HELD.name"}).status_code == 409
    [open_one] = conflicts(runtime)
    config = tmp_path / "dirbridge.toml"
    config.write_text(f'[database]\nurl = "{runtime.store.engine.url.render_as_string(hide_password=False)}"\n')
    listed = run_cli("conflicts", "--config", str(config), cwd=tmp_path)
    assert listed.returncode == 0 and "HELD.name" in listed.stdout and "scim:idp2 vs local" in listed.stdout
    closed = run_cli("conflicts", "close", str(open_one.id), "--config", str(config), cwd=tmp_path)
    assert closed.returncode == 0, closed.stderr
    assert conflicts(runtime) == []
    assert run_cli("conflicts", "close", str(open_one.id), "--config", str(config), cwd=tmp_path).returncode == 2


@pytest.mark.parametrize("config", [[{"source": "scim:idp1", "may_take_over": ["scim:idp2"]}]], indirect=True)
def test_a_change_of_owner_revokes_the_invitations_the_old_owner_could_use(client, runtime, admin_headers, idp2):
    kim = idp2.post("/Users", {"schemas": [CORE], "userName": "kim.owner",
                               "emails": [{"value": "kim@idp2.example", "primary": True}]}).json
    invited = client.post("/api/v1/invitations", headers=admin_headers, json={"user_id": kim["id"]})
    assert invited.status_code == 201, invited.json
    idp1 = scim_for(client, runtime, "idp1")
    assert idp1.patch(f"/Users/{kim['id']}", [{"op": "replace", "path": "displayName",
                                               "value": "Kim"}]).status_code in (200, 204)
    state = client.get("/api/v1/invitations", headers=admin_headers).json["items"][0]["state"]
    assert state == "revoked"
