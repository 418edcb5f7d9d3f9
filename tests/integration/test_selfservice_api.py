"""Self-service through the portal API, with the real SMTP sink: a forgotten password
(the same answer for known and unknown names, rate-limited, single-use and short-lived
links), the user's own profile, and a new e-mail address confirmed by a link sent to it.
Attacked: unknown names, names that differ in case and spacing, another purpose's token,
another source's user, many requests at once."""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import select

from bridge.accounts import selfservice
from bridge.accounts.context import context_for
from bridge.services import Actor
from bridge.store.models import AccountLink, AuditEvent, User
from tests.fixtures.accounts import GOOD_PASSWORD, FakeClock, accounts_config, attempt
from tests.fixtures.browser import make_operator

NEW_PASSWORD = "Another-Horse-8"


@pytest.fixture
def config(request, smtp_sink):
    """The accounts config of the self-service tests; a test's ``indirect`` parameter adds tables."""
    return accounts_config(smtp_sink, **getattr(request, "param", {}))


@pytest.fixture
def clock(runtime):
    runtime.clock = found = FakeClock()
    return found


@pytest.fixture
def nora(runtime, clock):
    return make_operator(runtime, "nora.local", operate=False, totp=False, password=GOOD_PASSWORD,
                         display_name="Nora Local", preferred_language="en")


def link_token(text: str, path: str) -> str:
    match = re.search(rf"https://portal\.example\.org{path}\?token=[A-Za-z0-9_-]+", text)
    assert match, text
    return parse_qs(urlparse(match.group(0)).query)["token"][0]


def ask_reset(client, headers, login, ip="198.51.100.7"):
    return client.post("/api/v1/account/password-reset", json={"login": login, "client_ip": ip}, headers=headers)


def confirm_reset(client, headers, token, password=NEW_PASSWORD):
    return client.post("/api/v1/account/password-reset/confirm", json={"token": token, "new_password": password},
                       headers=headers)


def drain(runtime) -> None:
    assert runtime.outbox.drain(10)


def test_a_forgotten_password_from_mail_to_login(client, admin_headers, smtp_sink, runtime, nora):
    answer = ask_reset(client, admin_headers, "  NORA.LOCAL ")  # as typed: case and spaces do not matter
    assert answer.status_code == 202 and "if the name or address belongs" in answer.json["message"]
    [mail] = smtp_sink.wait_for(1)
    assert mail.envelope_to == ("nora.local@example.org",) and mail.subject == "Reset your dirbridge password"
    assert "works once, until 2030-03-04 09:30 UTC" in mail.text
    token = link_token(mail.text, "/account/reset")
    with runtime.store.read() as session:  # the token's hash alone is stored, and not in the audit log
        link = session.scalar(select(AccountLink))
        assert link.purpose == "password_reset" and token not in link.token_hash
        assert not [e for e in session.scalars(select(AuditEvent)) if token in str(e.changes)]

    weak = confirm_reset(client, admin_headers, token, "short")
    assert weak.status_code == 400 and weak.json["error"]["field"] == "password"
    done = confirm_reset(client, admin_headers, token)
    assert done.status_code == 200 and done.json["user_name"] == "nora.local"
    assert attempt(client, admin_headers, "nora.local", NEW_PASSWORD).status_code == 200
    assert attempt(client, admin_headers, "nora.local", GOOD_PASSWORD).status_code == 401
    again = confirm_reset(client, admin_headers, token, "Third-Horse-9x")
    assert again.status_code == 410 and "used already" in again.json["error"]["message"]


def test_the_answer_is_the_same_whether_the_account_exists_or_not(client, admin_headers, smtp_sink, runtime, nora):
    known = ask_reset(client, admin_headers, "Nora.Local@Example.org")  # the address, as typed differently
    unknown = ask_reset(client, admin_headers, "nobody@example.org")
    unknown_name = ask_reset(client, admin_headers, "nobody")
    assert known.status_code == unknown.status_code == unknown_name.status_code == 202
    assert known.json == unknown.json == unknown_name.json
    drain(runtime)
    assert [m.envelope_to for m in smtp_sink.messages] == [("nora.local@example.org",)]


def test_a_link_works_once_within_its_time_and_a_newer_one_replaces_it(client, admin_headers, smtp_sink, nora,
                                                                      clock):
    ask_reset(client, admin_headers, "nora.local")
    first = link_token(smtp_sink.wait_for(1)[0].text, "/account/reset")
    ask_reset(client, admin_headers, "nora.local")
    second = link_token(smtp_sink.wait_for(2)[1].text, "/account/reset")
    replaced = confirm_reset(client, admin_headers, first)
    assert replaced.status_code == 410 and "newer link" in replaced.json["error"]["message"]
    clock.advance(minutes=30)  # self_service.reset_minutes
    expired = confirm_reset(client, admin_headers, second)
    assert expired.status_code == 410 and "expired" in expired.json["error"]["message"]
    unknown = confirm_reset(client, admin_headers, "x" * 43)
    assert unknown.status_code == 404
    assert attempt(client, admin_headers, "nora.local", GOOD_PASSWORD).status_code == 200  # nothing changed


def test_requests_are_limited_alike_for_known_and_unknown_names(client, admin_headers, smtp_sink, runtime, nora,
                                                               clock):
    for login in ("nora.local", "NORA.LOCAL", " nora.local"):  # one key, however typed
        assert ask_reset(client, admin_headers, login).status_code == 202
    for login in ("ghost", "GHOST", "ghost "):
        assert ask_reset(client, admin_headers, login).status_code == 202
    known, unknown = ask_reset(client, admin_headers, "nora.local"), ask_reset(client, admin_headers, "ghost")
    assert known.status_code == unknown.status_code == 429
    assert known.json == unknown.json and known.headers["Retry-After"] == "3600"
    drain(runtime)
    assert len(smtp_sink.messages) == 3
    clock.advance(hours=1, seconds=1)
    assert ask_reset(client, admin_headers, "nora.local").status_code == 202


def test_one_address_cannot_ask_for_everyone(client, admin_headers, runtime, clock):
    for i in range(20):  # self_service.requests_per_ip_per_hour
        assert ask_reset(client, admin_headers, f"someone{i}", ip="203.0.113.9").status_code == 202
    assert ask_reset(client, admin_headers, "someone-else", ip="203.0.113.9").status_code == 429
    assert ask_reset(client, admin_headers, "someone-else", ip="203.0.113.10").status_code == 202


def test_requests_at_once_send_no_more_mails_than_the_limit(runtime, smtp_sink, nora):
    ctx = context_for(runtime)
    outcomes: list[str] = []

    def ask() -> None:
        try:
            selfservice.request_password_reset(ctx, "nora.local", "198.51.100.8", Actor(name="t", channel="test"))
            outcomes.append("sent")
        except Exception as exc:  # noqa: BLE001 - the kind is asserted below
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["TooManyRequests"] * 9 + ["sent"] * 3
    drain(runtime)
    assert len(smtp_sink.messages) == 3
    with runtime.store.read() as session:  # the earlier links were closed by the later ones
        links = list(session.scalars(select(AccountLink)))
        assert len(links) == 3 and sum(link.revoked_at is None for link in links) == 1


def test_a_deactivated_user_gets_no_link_and_an_open_link_stops(client, admin_headers, smtp_sink, runtime, nora):
    ask_reset(client, admin_headers, "nora.local")
    token = link_token(smtp_sink.wait_for(1)[0].text, "/account/reset")
    with runtime.services.unit(Actor(name="t")) as uow:
        uow.users.update(uow.users.get(nora.user_id), active=False)
    assert confirm_reset(client, admin_headers, token).status_code == 410
    ask_reset(client, admin_headers, "nora.local")
    drain(runtime)
    assert len(smtp_sink.messages) == 1


def test_a_user_of_another_source_gets_no_usable_link_from_an_unconfigured_directory(client, admin_headers,
                                                                                  smtp_sink, runtime, clock):
    with runtime.services.unit(Actor(name="sync:corp", source="ldap:corp", channel="ldap-sync")) as uow:
        uow.users.create(user_name="dora.dir", email="dora@example.org", source_id="e-1",
                         ldap_dn="uid=dora,ou=people,dc=example,dc=org")
    assert ask_reset(client, admin_headers, "dora.dir").status_code == 202
    [mail] = smtp_sink.wait_for(1)
    assert "cannot reset it" in mail.text and "/account/reset" not in mail.text
    with runtime.store.read() as session:
        assert session.scalar(select(AccountLink)) is None


def test_a_token_of_one_purpose_does_not_serve_another(client, admin_headers, smtp_sink, nora):
    changed = client.post(f"/api/v1/users/{nora.user_id}/email-change", json={"email": "nora.new@example.org"},
                          headers=admin_headers)
    assert changed.status_code == 202
    token = link_token(smtp_sink.wait_for(1)[0].text, "/account/email")
    assert confirm_reset(client, admin_headers, token).status_code == 404  # not a reset link
    assert attempt(client, admin_headers, "nora.local", GOOD_PASSWORD).status_code == 200


def test_the_profile_takes_only_the_users_own_fields(client, admin_headers, runtime, nora):
    path = "/api/v1/users/nora.local/profile"  # by userName, as everywhere
    done = client.patch(path, json={"given_name": "Nora", "family_name": "Neu", "preferred_language": "de-DE",
                                    "timezone": "Europe/Berlin"}, headers=admin_headers)
    assert done.status_code == 200, done.json
    assert (done.json["given_name"], done.json["preferred_language"], done.json["timezone"]) == (
        "Nora", "de-DE", "Europe/Berlin")
    bad_zone = client.patch(path, json={"timezone": "Mars/Olympus"}, headers=admin_headers)
    assert bad_zone.status_code == 400 and bad_zone.json["error"]["field"] == "timezone"
    bad_language = client.patch(path, json={"preferred_language": "not a language"}, headers=admin_headers)
    assert bad_language.status_code == 400 and bad_language.json["error"]["field"] == "preferred_language"
    for field, value in (("access_type", "admin"), ("email", "x@example.org"), ("active", True)):
        refused = client.patch(path, json={field: value}, headers=admin_headers)
        assert refused.status_code == 422 and refused.json["error"]["field"] == field, refused.json
    with runtime.store.read() as session:
        user = session.get(User, nora.user_id)
        assert user.access_type.value == "backend" and user.email == "nora.local@example.org" and user.timezone == (
            "Europe/Berlin")


def test_another_sources_user_keeps_its_profile_and_address(client, admin_headers, runtime, scim_headers, clock):
    created = client.post("/scim/v2/Users", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                                  "userName": "ida@corp.example", "name": {"givenName": "Ida"},
                                                  "emails": [{"value": "ida@corp.example", "primary": True}]},
                          headers=scim_headers)
    assert created.status_code == 201, created.json
    profile = client.patch("/api/v1/users/ida@corp.example/profile", json={"given_name": "Mallory"},
                           headers=admin_headers)
    assert profile.status_code == 409 and "change them there" in profile.json["error"]["message"]
    email = client.post("/api/v1/users/ida@corp.example/email-change", json={"email": "mallory@evil.example"},
                        headers=admin_headers)
    assert email.status_code == 409
    with runtime.store.read() as session:
        user = session.scalar(select(User).where(User.user_name == "ida@corp.example"))
        assert user.given_name == "Ida" and user.email == "ida@corp.example"


def test_a_new_address_counts_once_its_link_is_used(client, admin_headers, smtp_sink, runtime, nora, clock):
    path = f"/api/v1/users/{nora.user_id}/email-change"
    assert client.post(path, json={"email": "not-an-address"}, headers=admin_headers).status_code == 400
    assert client.post(path, json={"email": "NORA.LOCAL@example.org"}, headers=admin_headers).status_code == 400
    asked = client.post(path, json={"email": "nora.new@example.org"}, headers=admin_headers)
    assert asked.status_code == 202 and asked.json["sent_to"] == "nora.new@example.org"
    mails = smtp_sink.wait_for(2)
    confirm = next(m for m in mails if m.envelope_to == ("nora.new@example.org",))
    notice = next(m for m in mails if m.envelope_to == ("nora.local@example.org",))
    assert "nora.new@example.org" in notice.text and "/account/email" not in notice.text
    token = link_token(confirm.text, "/account/email")
    with runtime.store.read() as session:
        assert session.get(User, nora.user_id).email == "nora.local@example.org"  # not before the link
    done = client.post("/api/v1/account/email-change/confirm", json={"token": token}, headers=admin_headers)
    assert done.status_code == 200 and done.json["email"] == "nora.new@example.org"
    again = client.post("/api/v1/account/email-change/confirm", json={"token": token}, headers=admin_headers)
    assert again.status_code == 410
    # the reset goes to the new address now
    ask_reset(client, admin_headers, "nora.new@example.org")
    drain(runtime)
    assert smtp_sink.messages[-1].envelope_to == ("nora.new@example.org",)


def test_self_service_turned_off_refuses_the_links(client, admin_headers, runtime, nora):
    runtime.config = runtime.config.model_copy(update={
        "self_service": runtime.config.self_service.model_copy(update={"enabled": False})})
    refused = ask_reset(client, admin_headers, "nora.local")
    assert refused.status_code == 403 and refused.json["error"]["code"] == "selfServiceDisabled"
    assert client.get("/account/login").status_code == 404


def test_an_idps_user_gets_no_password_from_dirbridge(client, admin_headers, scim_headers, smtp_sink, runtime,
                                                      clock):
    """The IdP owns its users' passwords (it sets them over SCIM, or keeps them): a forgotten
    password's mail says whom to ask and carries no link that would set one here."""
    created = client.post("/scim/v2/Users", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                                  "userName": "ivy@corp.example",
                                                  "emails": [{"value": "ivy@corp.example", "primary": True}]},
                          headers=scim_headers)
    assert created.status_code == 201
    assert ask_reset(client, admin_headers, "ivy@corp.example").status_code == 202
    [mail] = smtp_sink.wait_for(1)
    assert "cannot reset it" in mail.text and "/account/reset" not in mail.text
    with runtime.store.read() as session:
        assert session.scalar(select(AccountLink)) is None


def test_a_link_that_went_out_before_a_take_over_sets_no_password(client, admin_headers, smtp_sink, runtime, nora,
                                                                  clock):
    ask_reset(client, admin_headers, "nora.local")
    token = link_token(smtp_sink.wait_for(1)[0].text, "/account/reset")
    with runtime.store.write() as session:  # as if an ownership rule had let an IdP take her over
        session.get(User, nora.user_id).source = "scim:entra"
    refused = confirm_reset(client, admin_headers, token)
    assert refused.status_code == 409 and "identity provider" in refused.json["error"]["message"]


@pytest.mark.parametrize("config", [{"self_service": {
    "reset_url": "https://portal.example.org/password-reset?token={token}",
    "email_url": "https://portal.example.org/confirm-email?token={token}"}}], indirect=True)
def test_links_can_point_at_the_portals_own_pages(client, admin_headers, smtp_sink, nora, clock):
    ask_reset(client, admin_headers, "nora.local")
    token = link_token(smtp_sink.wait_for(1)[0].text, "/password-reset")
    assert confirm_reset(client, admin_headers, token).status_code == 200
    asked = client.post(f"/api/v1/users/{nora.user_id}/email-change", json={"email": "nora.new@example.org"},
                        headers=admin_headers)
    assert asked.status_code == 202
    confirm = next(m for m in smtp_sink.wait_for(3) if m.envelope_to == ("nora.new@example.org",))
    assert "https://portal.example.org/confirm-email?token=" in confirm.text


@pytest.mark.parametrize("url", ["https://portal.example.org/reset", "javascript:alert(1)//{token}",
                                 "https://portal example.org/{token}"])
def test_a_link_template_without_a_token_or_not_a_url_is_a_config_error(url):
    from bridge.config import ConfigError, load_config_data

    with pytest.raises(ConfigError, match="reset_url"):
        load_config_data({"self_service": {"reset_url": url}})


def test_the_profile_honours_the_switch(client, admin_headers, runtime, nora):
    runtime.config = runtime.config.model_copy(update={
        "self_service": runtime.config.self_service.model_copy(update={"enabled": False})})
    refused = client.patch("/api/v1/users/nora.local/profile", json={"given_name": "N"}, headers=admin_headers)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "selfServiceDisabled"


@pytest.mark.parametrize("config", [{"scim": {"clients": {"okta": {"passwords": True}}}}], indirect=True)
def test_a_password_the_idp_sets_is_not_changed_through_the_portal(client, admin_headers, runtime, clock):
    from tests.fixtures.app import create_token

    okta = {"Authorization": f"Bearer {create_token(runtime, 'okta', 'scim')}"}
    created = client.post("/scim/v2/Users", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                                  "userName": "olga@corp.example", "password": "Okta-Sets-It-1",
                                                  "emails": [{"value": "olga@corp.example"}]}, headers=okta)
    assert created.status_code == 201
    assert attempt(client, admin_headers, "olga@corp.example", "Okta-Sets-It-1").status_code == 200
    changed = client.post("/api/v1/auth/password", json={"username": "olga@corp.example", "password": "Okta-Sets-It-1",
                                                         "new_password": NEW_PASSWORD}, headers=admin_headers)
    assert changed.status_code == 409 and "identity provider" in changed.json["error"]["message"]
    assert attempt(client, admin_headers, "olga@corp.example", "Okta-Sets-It-1").status_code == 200
