"""The status page in a real browser (Debian's headless Chromium) against the real app on
a real port: an operator logs in with password and TOTP and sees a deletion guard that
tripped for real (a sync against the real slapd after most users were deleted there)
and the failed job it caused; screenshots at desktop and phone width are kept as test
artifacts ($DIRBRIDGE_TEST_ARTIFACTS, else test-artifacts/)."""

from __future__ import annotations

import http.client
import re
import time
from urllib.parse import urlparse

import pytest

from bridge.jobs.leader import release_leadership
from bridge.jobs.scheduler import build_scheduler, find_job, run_job
from bridge.runtime import build_runtime
from bridge.web import create_app
from tests.fixtures.accounts import accounts_config
from tests.fixtures.app import create_token
from tests.fixtures.browser import live_server, make_operator
from tests.fixtures.slapd import source_settings

PEOPLE = ["amira", "bruno", "chen", "dalia", "emil", "fatou", "goran", "hana", "ivo", "jun"]
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def synced_runtime(sqlite_store, ldap_tree, tmp_path):
    """A runtime whose source ``corp`` synced a few times, then lost 8 of its 10 users: the
    scheduled full sync (run as the scheduler runs it) was stopped by the deletion guard."""
    tree = ldap_tree
    dns = {uid: tree.add_user(uid, displayName=f"{uid.title()} Example") for uid in PEOPLE}
    tree.add_group("support", [dns["amira"], dns["bruno"], dns["chen"]])
    source = source_settings(tree.server, tree, deletion_guard={"max_percent": 20, "max_count": 5, "min_entries": 1},
                             schedule={"full": "1h", "incremental": "15m"})
    config = accounts_config(ldap={"sources": [source]}, status={"refresh_seconds": 30})
    rt = build_runtime(config.model_copy(update={"data_dir": tmp_path}), store=sqlite_store)

    full, incremental = find_job(rt, "ldap-full:corp"), find_job(rt, "ldap-incremental:corp")
    assert run_job(rt, full).outcome == "ok"
    tree.modify(dns["chen"], mail="chen.new@example.org")
    tree.modify(dns["dalia"], displayName="Dalia Renamed")
    assert run_job(rt, incremental).outcome == "ok"
    assert run_job(rt, full).outcome == "ok"
    for uid in PEOPLE[2:]:
        tree.delete(dns[uid])
    failed = run_job(rt, full)
    assert failed.outcome == "failed" and "deletion guard" in (failed.message or "")
    yield rt
    if rt.scheduler is not None:
        rt.scheduler.shutdown(wait=True)
        release_leadership(rt)


def scim_traffic(base: str, token: str) -> None:
    """A few SCIM requests of one client over HTTP, one of them an error."""
    url = urlparse(base)
    for path in ["/scim/v2/Users"] * 5 + ["/scim/v2/Users/00000000-0000-0000-0000-000000000000"]:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        conn.getresponse().read()
        conn.close()


def test_an_operator_sees_the_tripped_guard_and_the_failed_job(synced_runtime, chromium, artifacts_dir):
    rt = synced_runtime
    rt.scheduler = build_scheduler(rt)  # next runs and the leader, as `dirbridge serve` has them
    rt.scheduler.start()
    account = make_operator(rt, "ops.person")
    token = create_token(rt, "entra", "scim")
    with live_server(create_app(rt)) as base:
        scim_traffic(base, token)
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))

        page.goto(f"{base}/status")
        assert page.url == f"{base}/status/login"  # nothing before the login
        page.fill("#username", account.user_name)
        page.fill("#password", account.password)
        page.fill("#code", account.code(time.time() + 30))  # the next step: enrolment used this one
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/status")

        # What is wrong now comes first: the source, since when, why, what to do, the run.
        attention = page.locator("#attention")
        source_line = attention.locator('li.item.bad[data-kind="ldap"]')
        assert source_line.is_visible() and source_line.bounding_box()["y"] < 400  # above the fold
        text = source_line.inner_text()
        assert "LDAP source corp: stopped by the deletion guard (1 run)" in text and "since" in text
        assert "deletion_guard.max_count = 5" in text and "dirbridge sync corp --approve-deletions" in text
        assert source_line.locator("a.button").get_attribute("href").startswith("/status/sync-runs/")
        client_line = attention.locator('li.item.ok[data-kind="scim"]')  # 1 error in 6: not failing
        assert "SCIM client entra: healthy" in client_line.inner_text()
        assert attention.locator('li[data-kind="job"]').count() == 0  # the sync job's failure is the source's line

        guard = page.locator("#ldap .guard")
        assert guard.is_visible()
        assert "Deletion guard tripped" in guard.inner_text() and "would deactivate 8 users" in guard.inner_text()
        assert page.locator("#failures tr.failed-sync").count() == 1  # the guarded run, once
        assert page.locator("#failures tr.failed-job").count() == 0  # not again as the job that ran it
        job_row = page.locator("#jobs tr", has_text="ldap-full:corp").first
        assert "failed" in job_row.inner_text() and re.search(r"\bin \d", job_row.inner_text())  # next run ahead
        assert page.locator("#ldap svg.chart rect").count() >= 4  # one bar per run at least
        assert "entra" in page.locator("#scim").inner_text()
        assert page.locator('meta[http-equiv="refresh"]').get_attribute("content") == "30"
        page.screenshot(path=str(artifacts_dir / "status-desktop.png"), full_page=True)

        page.click("#ldap .guard a")
        page.wait_for_url(f"{base}/status/sync-runs/*")
        plan = page.locator("table.plan").first.inner_text()
        assert all(uid in plan for uid in PEOPLE[2:]) and "amira" not in plan
        page.screenshot(path=str(artifacts_dir / "status-guard-plan.png"), full_page=True)

        phone = chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                     storage_state=context.storage_state())  # the same login, on a phone
        small = phone.new_page()
        small.goto(f"{base}/status")
        assert small.url == f"{base}/status"
        assert small.locator("#ldap .guard").is_visible()
        width = small.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the page is {width}px wide on a {PHONE['width']}px screen"
        failing = small.locator('#attention li.item.bad[data-kind="ldap"]')
        box = failing.bounding_box()
        assert box["y"] < PHONE["height"] and box["x"] + box["width"] <= PHONE["width"]  # first screen, not cut
        cut = small.evaluate("""[...document.querySelectorAll('main *')].filter(e => {
            const r = e.getBoundingClientRect(); return r.width && r.right > window.innerWidth + 1
              && !e.closest('.scroll'); }).map(e => e.tagName + '.' + e.className).slice(0, 5)""")
        assert cut == [], f"cut off at the right edge on a phone: {cut}"
        small.screenshot(path=str(artifacts_dir / "status-phone.png"), full_page=True)

        small.click("text=Log out")
        small.wait_for_url(f"{base}/status/login")
        phone.close()
        context.close()
    assert not problems, problems  # no CSP violation, no script error
