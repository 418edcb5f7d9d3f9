"""Invitations end to end, with the real SMTP sink: the API creates the user and the
invitation, the mail carries the link, the page sets the password (and enrols TOTP
where required), the portal's login succeeds. Expired, used and withdrawn links
fail clearly; the cleanup job expires and purges on the test's clock."""

from __future__ import annotations

import hashlib

import pyotp
import pytest
from sqlalchemy import func, select

from bridge.accounts.jobs import invitation_cleanup
from bridge.store.models import AuditEvent, Invitation, User
from tests.fixtures.accounts import (
    GOOD_PASSWORD,
    FakeClock,
    accounts_config,
    attempt,
    csrf_of,
    link_in,
    token_of,
)
from tests.fixtures.app import run_cli
from tests.fixtures.net import free_port

ROLES = [{"name": "basic_user", "rights": ["orders.read"]}]


@pytest.fixture
def config(smtp_sink):
    return accounts_config(smtp_sink, roles=ROLES)


@pytest.fixture
def clock(runtime):
    runtime.clock = found = FakeClock()
    return found


def invite(client, headers, **body):
    payload = {"email": "nora.new@example.org", "display_name": "Nora New", **body}
    return client.post("/api/v1/invitations", json=payload, headers=headers)


def set_password(client, link, password, repeat=None):
    page = client.get(link[len("https://portal.example.org"):])
    assert page.status_code == 200, page.text
    return client.post("/invite", data={"csrf": csrf_of(page.text), "token": token_of(link),
                                        "password": password, "password_confirm": repeat or password})


def test_invitation_from_mail_to_login(client, admin_headers, smtp_sink, runtime, clock):
    created = invite(client, admin_headers, preferred_language="de", roles=["basic_user@instance"])
    assert created.status_code == 201, created.json
    assert created.json["state"] == "open"
    assert created.json["expires_at"].startswith("2030-03-09T09:00")  # 5 days by default
    [mail] = smtp_sink.wait_for(1)
    assert mail.envelope_to == ("nora.new@example.org",)
    assert mail.subject == "Ihre Einladung zu dirbridge"
    assert "Hallo Nora New" in mail.text and "09.03.2030 09:00 UTC" in mail.text
    link = link_in(mail.text)
    html = mail.message.get_body(preferencelist=("html",)).get_content()
    assert link.replace("&", "&amp;") in html or link in html
    token = token_of(link)

    with runtime.store.read() as session:  # only the hash is stored, and no token in the audit log
        stored = session.scalar(select(Invitation))
        assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest() and stored.sent_at is not None
        assert not [e for e in session.scalars(select(AuditEvent)) if token in str(e.changes)]

    page = client.get(link[len("https://portal.example.org"):])
    assert page.status_code == 200
    assert "nora.new@example.org" in page.text and "Passwort festlegen" in page.text
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie

    weak = set_password(client, link, "short")
    assert weak.status_code == 400 and "das Passwort muss mindestens 12 Zeichen haben" in weak.text
    differ = set_password(client, link, GOOD_PASSWORD, GOOD_PASSWORD + "x")
    assert differ.status_code == 400 and "stimmen nicht" in differ.text

    done = set_password(client, link, GOOD_PASSWORD)
    assert done.status_code == 200 and "Ihr Passwort ist gespeichert" in done.text

    login = attempt(client, admin_headers, "nora.new@example.org", GOOD_PASSWORD)
    assert login.status_code == 200, login.json
    assert login.json["user"]["user_name"] == "nora.new@example.org"
    assert login.json["roles"] == [{"role": "basic_user", "scope": "instance"}]
    assert login.json["password_change_required"] is False

    again = client.get(link[len("https://portal.example.org"):])
    assert again.status_code == 410 and "used already" in again.text
    listed = client.get("/api/v1/invitations?state=used", headers=admin_headers).json
    assert listed["total"] == 1


def test_a_page_without_the_csrf_token_is_refused(client, admin_headers, smtp_sink, clock):
    invite(client, admin_headers)
    link = link_in(smtp_sink.wait_for(1)[0].text)
    forged = client.post("/invite", data={"token": token_of(link), "password": GOOD_PASSWORD,
                                          "password_confirm": GOOD_PASSWORD, "csrf": "forged"})
    assert forged.status_code == 400
    assert client.get(link[len("https://portal.example.org"):]).status_code == 200  # still usable


def test_an_expired_link_fails_clearly_and_cleanup_expires_and_purges(client, admin_headers, smtp_sink,
                                                                      runtime, clock):
    invite(client, admin_headers)
    link = link_in(smtp_sink.wait_for(1)[0].text)
    path = link[len("https://portal.example.org"):]
    clock.advance(days=4, hours=23)
    assert client.get(path).status_code == 200
    assert invitation_cleanup(runtime) == {"expired": 0, "purged": 0, "links_purged": 0}
    clock.advance(hours=1)
    expired = client.get(path)
    assert expired.status_code == 410 and "has expired" in expired.text
    assert invitation_cleanup(runtime) == {"expired": 1, "purged": 0, "links_purged": 0}
    assert client.get("/api/v1/invitations", headers=admin_headers).json["items"][0]["state"] == "expired"
    assert client.get(path).status_code == 410
    clock.advance(days=30, seconds=1)  # invites.retention_days
    assert invitation_cleanup(runtime) == {"expired": 0, "purged": 1, "links_purged": 0}
    with runtime.store.read() as session:
        assert session.scalar(select(func.count()).select_from(Invitation)) == 0
    gone = client.get(path)
    assert gone.status_code == 404 and "not valid" in gone.text


def test_resend_replaces_the_link_and_revoke_withdraws_it(client, admin_headers, smtp_sink, clock):
    first = invite(client, admin_headers).json
    old_link = link_in(smtp_sink.wait_for(1)[0].text)
    resent = client.post(f"/api/v1/invitations/{first['id']}/resend", headers=admin_headers)
    assert resent.status_code == 201 and resent.json["id"] != first["id"]
    new_link = link_in(smtp_sink.wait_for(2)[1].text)
    assert new_link != old_link
    withdrawn = client.get(old_link[len("https://portal.example.org"):])
    assert withdrawn.status_code == 410 and "withdrawn" in withdrawn.text
    revoked = client.post(f"/api/v1/invitations/{resent.json['id']}/revoke", headers=admin_headers)
    assert revoked.status_code == 200 and revoked.json["state"] == "revoked"
    assert client.get(new_link[len("https://portal.example.org"):]).status_code == 410
    twice = client.post(f"/api/v1/invitations/{resent.json['id']}/revoke", headers=admin_headers)
    assert twice.status_code == 400 and "revoked already" in twice.json["error"]["message"]


def test_a_refused_mail_changes_nothing(runtime, client, admin_headers, clock):
    runtime.config = runtime.services.config = accounts_config(
        smtp=type("Down", (), {"host": "127.0.0.1", "port": free_port()})())
    failed = invite(client, admin_headers)
    assert failed.status_code == 502 and failed.json["error"]["code"] == "mailFailed"
    assert "nothing was changed" in failed.json["error"]["message"]
    with runtime.store.read() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0
        assert session.scalar(select(func.count()).select_from(Invitation)) == 0


def test_admins_enrol_totp_on_the_invitation_page(runtime, client, admin_headers, smtp_sink, clock):
    runtime.config = runtime.services.config = accounts_config(smtp_sink,
                                                               policy={"totp": {"required_for_admins": True}})
    invite(client, admin_headers, email="root.admin@example.org", access_type="admin")
    link = link_in(smtp_sink.wait_for(1)[0].text)
    done = set_password(client, link, GOOD_PASSWORD)
    assert done.status_code == 303 and done.headers["Location"].endswith("/invite/totp")
    page = client.get("/invite/totp")
    assert page.status_code == 200 and "<svg" in page.text
    secret = page.text.split("<code>")[1].split("</code>")[0]
    wrong = client.post("/invite/totp", data={"csrf": csrf_of(page.text), "code": "000000"})
    assert wrong.status_code == 400 and "does not match" in wrong.text
    code = pyotp.TOTP(secret).at(clock.now)
    codes = client.post("/invite/totp", data={"csrf": csrf_of(page.text), "code": code})
    assert codes.status_code == 200 and codes.text.count("<li><code>") == 10
    assert client.get("/invite/totp").status_code == 410  # the step is over

    needs_code = attempt(client, admin_headers, "root.admin@example.org", GOOD_PASSWORD)
    assert needs_code.status_code == 401 and needs_code.json["error"]["code"] == "totpRequired"
    clock.advance(seconds=30)
    ok = attempt(client, admin_headers, "root.admin@example.org", GOOD_PASSWORD, pyotp.TOTP(secret).at(clock.now))
    assert ok.status_code == 200 and ok.json["totp_enrolment_required"] is False


def test_cli_invite_mails_the_link(tmp_path, smtp_sink):
    config = tmp_path / "dirbridge.toml"
    config.write_text(f'data_dir = "data"\n[server]\npublic_url = "https://portal.example.org"\n'
                      f'[smtp]\nhost = "{smtp_sink.host}"\nport = {smtp_sink.port}\ntls = "none"\n'
                      f'[[roles]]\nname = "basic_user"\nrights = ["orders.read"]\n')
    result = run_cli("invite", "carla.cli@example.org", "--role", "basic_user@instance", "--username",
                     "carla.cli", "--language", "en", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "invited carla.cli <carla.cli@example.org>" in result.stdout
    [mail] = smtp_sink.wait_for(1)
    assert mail.subject == "Your invitation to dirbridge" and 'as user "carla.cli"' in mail.text
    link_in(mail.text)
    unknown_role = run_cli("invite", "x.y@example.org", "--role", "nope@instance", "--config", str(config),
                           cwd=tmp_path)
    assert unknown_role.returncode == 1 and "nope" in unknown_role.stderr
    assert len(smtp_sink.messages) == 1
