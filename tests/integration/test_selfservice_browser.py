"""The account pages in a real browser (Debian's headless Chromium) against the real app
on a real port, with the real SMTP sink: a user who forgot the password asks for a link,
opens it from the mail, chooses a password, logs in, sets the profile to German, sets up
TOTP and keeps the recovery codes. No script runs and the CSP reports nothing;
screenshots at desktop and phone width are kept as test artifacts."""

from __future__ import annotations

import re
import time

import pyotp
import pytest

from bridge.runtime import build_runtime
from bridge.web import create_app
from tests.fixtures.accounts import GOOD_PASSWORD, accounts_config
from tests.fixtures.browser import live_server, make_operator
from tests.integration.test_selfservice_api import NEW_PASSWORD, link_token

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def browser_runtime(sqlite_store, smtp_sink, tmp_path):
    config = accounts_config(smtp_sink)
    return build_runtime(config.model_copy(update={"data_dir": tmp_path}), store=sqlite_store)


def test_a_user_resets_the_password_and_sets_up_the_account(browser_runtime, chromium, smtp_sink, artifacts_dir):
    rt = browser_runtime
    make_operator(rt, "nora.local", operate=False, totp=False, password=GOOD_PASSWORD, display_name="Nora Local")
    with live_server(create_app(rt)) as base:
        context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))

        page.goto(f"{base}/account")
        assert page.url == f"{base}/account/login"
        page.click("text=Forgot your password?")
        page.fill("#login", "Nora.Local@example.org")
        page.click("button[type=submit]")
        assert "a mail with a link is on its way" in page.inner_text("body")
        [mail] = smtp_sink.wait_for(1)
        token = link_token(mail.text, "/account/reset")

        page.goto(f"{base}/account/reset?token={token}")
        assert "nora.local" in page.inner_text("body")
        page.fill("#new_password", "short")
        page.fill("#new_password_repeat", "short")
        page.click("button[type=submit]")
        assert page.locator(".problems").is_visible() and "12" in page.inner_text(".problems")
        assert problems == ["Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"]
        problems.clear()  # the refused password's page answers 400, as it should
        page.fill("#new_password", NEW_PASSWORD)
        page.fill("#new_password_repeat", NEW_PASSWORD)
        page.click("button[type=submit]")
        assert "You can log in now" in page.inner_text("body")

        page.goto(f"{base}/account/login")
        page.fill("#username", "nora.local")
        page.fill("#password", NEW_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/account")
        page.fill("#given_name", "Nora")
        page.fill("#preferred_language", "de")
        page.fill("#timezone", "Europe/Berlin")
        page.click("text=Save")
        assert "Ihr Profil ist gespeichert" in page.inner_text("body")  # the pages follow her language now
        page.screenshot(path=str(artifacts_dir / "account-desktop.png"), full_page=True)

        page.click("nav >> text=Zweiter Faktor (TOTP)")
        secret = re.search(r"[A-Z2-7]{16,}", page.inner_text("code")).group(0)
        assert page.locator(".qr svg").is_visible()
        page.fill("#code", pyotp.TOTP(secret).at(time.time()))
        page.fill("#current_password", NEW_PASSWORD)
        page.click("text=Bestätigen")
        codes = page.locator("ul.codes li").all_inner_texts()
        assert len(codes) >= 8 and "Wiederherstellungscodes" in page.inner_text("h1")

        phone = chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                     storage_state=context.storage_state())
        small = phone.new_page()
        small.goto(f"{base}/account")
        width = small.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the page is {width}px wide on a {PHONE['width']}px screen"
        small.screenshot(path=str(artifacts_dir / "account-phone.png"), full_page=True)
        small.click("text=Abmelden")
        small.wait_for_url(f"{base}/account/login")
        page.goto(f"{base}/account")  # the logout ended every session of hers
        assert page.url == f"{base}/account/login"
        phone.close()
        context.close()
    assert not problems, problems  # no CSP violation, no script error
