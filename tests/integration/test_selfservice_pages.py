"""The account pages (/account) with the real SMTP sink: log in, profile, a new e-mail
address, a new password, TOTP and recovery codes, a forgotten password. Attacked:
forms without the CSRF token, a session after logout or a password change, a wrong
current password (it counts towards the lockout), a temporary password that opens
nothing else, mail scanners that fetch links, hostile values shown back."""

from __future__ import annotations

import re

import pyotp

from bridge.services import Actor
from bridge.store.models import User
from tests.fixtures.accounts import GOOD_PASSWORD, attempt
from tests.fixtures.browser import csrf_in
from tests.integration.test_selfservice_api import NEW_PASSWORD, clock, config, link_token, nora  # noqa: F401


def log_in(client, user_name="nora.local", password=GOOD_PASSWORD, code=None):
    page = client.get("/account/login")
    assert page.status_code == 200
    data = {"csrf": csrf_in(page.text), "username": user_name, "password": password}
    if code:
        data["code"] = code
    return client.post("/account/login", data=data)


def post(client, path, page_path="/account", **data):
    page = client.get(page_path)
    return client.post(path, data={"csrf": csrf_in(page.text), **data})


def test_login_profile_and_logout(client, runtime, nora, clock):
    assert client.get("/account").headers["Location"].endswith("/account/login")
    page = client.get("/account/login")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["Cache-Control"] == "no-store"
    wrong = log_in(client, password="Wrong-Password-1")
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    done = log_in(client)
    assert done.status_code == 303 and done.headers["Location"].endswith("/account")
    home = client.get("/account")
    assert home.status_code == 200 and "nora.local" in home.text
    saved = post(client, "/account/profile", given_name="<script>alert(1)</script>", family_name="Neu",
                 display_name="Nora N", preferred_language="de", timezone="Europe/Berlin")
    assert saved.status_code == 200 and "Ihr Profil ist gespeichert" in saved.text  # now in German
    assert "<script>alert(1)</script>" not in saved.text and "&lt;script&gt;" in saved.text
    bad = post(client, "/account/profile", timezone="Mars/Olympus")
    assert bad.status_code == 400 and "IANA" in bad.text
    with runtime.store.read() as session:
        user = session.get(User, nora.user_id)
        assert (user.family_name, user.timezone) == ("Neu", "Europe/Berlin")
    cookie = client.get_cookie("dirbridge_session")
    clock.advance(seconds=1)
    post(client, "/account/logout")
    assert client.get("/account").status_code == 303
    client.set_cookie("dirbridge_session", cookie.value)  # a copied cookie from before the logout
    assert client.get("/account").status_code == 303


def test_forms_without_the_csrf_token_change_nothing(client, runtime, nora):
    log_in(client)
    forged = client.post("/account/profile", data={"csrf": "forged", "given_name": "Mallory"})
    assert forged.status_code == 400
    forged = client.post("/account/email", data={"given_name": "Mallory", "email": "m@evil.example"})
    assert forged.status_code == 400
    with runtime.store.read() as session:
        user = session.get(User, nora.user_id)
        assert user.given_name is None and user.email == "nora.local@example.org"


def test_password_change_needs_the_current_one_and_ends_other_sessions(client, runtime, nora, admin_headers,
                                                                      clock):
    log_in(client)
    other = client.application.test_client()
    log_in(other)
    clock.advance(seconds=1)
    mismatch = post(client, "/account/password", "/account/password", current_password=GOOD_PASSWORD,
                    new_password=NEW_PASSWORD, new_password_repeat=NEW_PASSWORD + "x")
    assert mismatch.status_code == 400 and "differ" in mismatch.text
    for _ in range(4):
        wrong = post(client, "/account/password", "/account/password", current_password="Not-The-One-1",
                     new_password=NEW_PASSWORD, new_password_repeat=NEW_PASSWORD)
        assert wrong.status_code == 401
    changed = post(client, "/account/password", "/account/password", current_password=GOOD_PASSWORD,
                   new_password=NEW_PASSWORD, new_password_repeat=NEW_PASSWORD)
    assert changed.status_code == 200 and "Your password is changed" in changed.text
    assert client.get("/account").status_code == 200  # this browser goes on
    assert other.get("/account").status_code == 303  # the other session ended
    assert attempt(client, admin_headers, "nora.local", NEW_PASSWORD).status_code == 200


def test_wrong_current_passwords_lock_like_wrong_logins(client, nora, admin_headers, clock):
    log_in(client)
    clock.advance(seconds=1)
    for _ in range(5):  # policy.lockout.max_failures_per_account
        post(client, "/account/password", "/account/password", current_password="Not-The-One-1",
             new_password=NEW_PASSWORD, new_password_repeat=NEW_PASSWORD)
    assert client.get("/account").status_code == 303  # the lock ended the session
    assert attempt(client, admin_headers, "nora.local", GOOD_PASSWORD).status_code == 423


def test_a_temporary_password_opens_only_the_password_form(client, runtime, nora):
    from bridge.accounts.context import context_for
    from bridge.accounts.credentials import reset_to_temporary

    with runtime.services.unit(Actor(name="t")) as uow:
        temporary = reset_to_temporary(context_for(runtime), uow, uow.users.get(nora.user_id))
    done = log_in(client, password=temporary)
    assert done.headers["Location"].endswith("/account/password")
    assert client.get("/account").headers["Location"].endswith("/account/password")
    assert client.get("/account/totp").headers["Location"].endswith("/account/password")
    form = client.get("/account/password")
    assert "temporary" in form.text
    changed = client.post("/account/password", data={"csrf": csrf_in(form.text), "current_password": temporary,
                                                     "new_password": NEW_PASSWORD,
                                                     "new_password_repeat": NEW_PASSWORD})
    assert changed.status_code == 200
    assert client.get("/account").status_code == 200


def test_own_totp_and_recovery_codes(client, runtime, nora, clock, admin_headers):
    log_in(client)
    page = client.get("/account/totp")
    secret = re.search(r"<code>([A-Z2-7]{16,})</code>", page.text).group(1)
    assert "<svg" in page.text
    wrong = client.post("/account/totp", data={"csrf": csrf_in(page.text), "code": "000000",
                                               "current_password": GOOD_PASSWORD})
    assert wrong.status_code == 400 and secret in wrong.text  # the same secret again
    code = pyotp.TOTP(secret).at(clock.now)
    stolen = client.post("/account/totp", data={"csrf": csrf_in(page.text), "code": code,
                                                "current_password": "Not-The-One-1"})
    assert stolen.status_code == 401 and secret in stolen.text  # a session alone sets up no second factor
    codes = client.post("/account/totp", data={"csrf": csrf_in(page.text), "code": code,
                                               "current_password": GOOD_PASSWORD})
    assert codes.status_code == 200
    first = re.findall(r"<li><code>([^<]+)</code></li>", codes.text)
    assert len(first) >= 8
    on = client.get("/account/totp")
    assert f"Recovery codes left: {len(first)}" in on.text
    refused = client.post("/account/totp/recovery-codes", data={"csrf": csrf_in(on.text)})
    assert refused.status_code == 401 and "<li><code>" not in refused.text
    fresh = client.post("/account/totp/recovery-codes", data={"csrf": csrf_in(on.text),
                                                              "current_password": GOOD_PASSWORD})
    second = re.findall(r"<li><code>([^<]+)</code></li>", fresh.text)
    assert second and not set(first) & set(second)
    assert attempt(client, admin_headers, "nora.local", GOOD_PASSWORD, first[0]).status_code == 401  # gone
    clock.advance(seconds=60)
    assert attempt(client, admin_headers, "nora.local", GOOD_PASSWORD, second[0]).status_code == 200


def test_forgot_and_reset_through_the_pages(client, smtp_sink, runtime, nora, admin_headers):
    page = client.get("/account/forgot", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert "Passwort vergessen" in page.text
    sent = client.post("/account/forgot", data={"csrf": csrf_in(page.text), "login": "nora.local"},
                       headers={"Accept-Language": "de"})
    unknown = client.post("/account/forgot", data={"csrf": csrf_in(page.text), "login": "nobody.here"},
                          headers={"Accept-Language": "de"})
    assert sent.status_code == unknown.status_code == 200 and sent.text == unknown.text
    token = link_token(smtp_sink.wait_for(1)[0].text, "/account/reset")
    scanner = client.get(f"/account/reset?token={token}")  # a mail scanner fetching the link uses nothing
    assert scanner.status_code == 200 and client.get(f"/account/reset?token={token}").status_code == 200
    done = client.post("/account/reset", data={"csrf": csrf_in(scanner.text), "token": token,
                                               "new_password": NEW_PASSWORD, "new_password_repeat": NEW_PASSWORD})
    assert done.status_code == 200 and "You can log in now" in done.text
    used = client.get(f"/account/reset?token={token}")
    assert used.status_code == 410 and "used already" in used.text
    assert attempt(client, admin_headers, "nora.local", NEW_PASSWORD).status_code == 200


def test_email_change_through_the_pages(client, smtp_sink, runtime, nora):
    log_in(client)
    without = post(client, "/account/email", email="nora.new@example.org")  # a session alone moves no mail
    assert without.status_code == 401 and not smtp_sink.messages
    asked = post(client, "/account/email", email="nora.new@example.org", current_password=GOOD_PASSWORD)
    assert asked.status_code == 200 and "nora.new@example.org" in asked.text
    confirm = next(m for m in smtp_sink.wait_for(2) if m.envelope_to == ("nora.new@example.org",))
    token = link_token(confirm.text, "/account/email")
    shown = client.get(f"/account/email?token={token}")  # GET only shows
    assert shown.status_code == 200 and "nora.new@example.org" in shown.text
    with runtime.store.read() as session:
        assert session.get(User, nora.user_id).email == "nora.local@example.org"
    done = client.post("/account/email/confirm", data={"csrf": csrf_in(shown.text), "token": token})
    assert done.status_code == 200 and "nora.new@example.org" in done.text
    with runtime.store.read() as session:
        assert session.get(User, nora.user_id).email == "nora.new@example.org"
