"""The SCIM clients panel of /status on SQLite and PostgreSQL: requests and errors per
client in the last hour, counted by the SCIM app and summed over replicas."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from bridge.clock import utcnow
from bridge.store.models import ScimClientMinute
from bridge.web.scim_activity import ScimActivity, client_activity, minute_of
from tests.fixtures.accounts import FakeClock, accounts_config
from tests.fixtures.app import create_token
from tests.fixtures.browser import login_form, make_operator


@pytest.fixture
def config():
    return accounts_config()


def panel_row(html: str, client: str) -> tuple[int, int]:
    """(requests, errors) of the last hour in the client's row of the page."""
    row = re.search(rf'<tr data-client="{re.escape(client)}">(.*?)</tr>', html, re.S)
    assert row, html
    numbers = re.findall(r'<td class="num[^"]*"[^>]*>(\d+)</td>', row.group(1))
    assert len(numbers) == 2, row.group(1)
    return int(numbers[0]), int(numbers[1])


def test_the_panel_counts_requests_and_errors_per_client(runtime, client):
    clock = runtime.clock = FakeClock(utcnow().replace(microsecond=0))
    entra = {"Authorization": f"Bearer {create_token(runtime, 'entra', 'scim')}"}
    okta = {"Authorization": f"Bearer {create_token(runtime, 'okta', 'scim')}"}
    create_token(runtime, "quiet", "scim")
    for _ in range(3):
        assert client.get("/scim/v2/Users", headers=entra).status_code == 200
    assert client.get("/scim/v2/Users/00000000-0000-0000-0000-000000000000", headers=entra).status_code == 404
    assert client.post("/scim/v2/Users", json={"schemas": ["nonsense"]}, headers=okta).status_code == 400
    assert client.get("/scim/v2/Users", headers={"Authorization": "Bearer dbr_wrong"}).status_code == 401

    account = make_operator(runtime)
    clock.advance(seconds=30)
    assert login_form(client, account.user_name, account.password, account.code(clock.now)).status_code == 303
    html = client.get("/status").get_data(as_text=True)
    assert panel_row(html, "entra") == (4, 1)
    assert panel_row(html, "okta") == (1, 1)
    assert panel_row(html, "quiet") == (0, 0)
    assert panel_row(html, "") == (1, 1)  # no valid token
    assert "no valid token" in html

    # An hour later the counts have left the window; the last request is still known.
    clock.advance(minutes=61)
    later = {c.name: c for c in client_activity(runtime)}
    assert (later["entra"].requests_last_hour, later["entra"].errors_last_hour) == (0, 0)
    assert later["entra"].last_request is not None


def test_replicas_add_up_in_the_same_minute_rows(runtime):
    create_token(runtime, "entra", "scim")
    now = utcnow().replace(second=30, microsecond=0)
    first, second = ScimActivity(runtime.store, lambda: now), ScimActivity(runtime.store, lambda: now)
    for activity, statuses in ((first, (200, 200, 409)), (second, (200, 500))):
        for status in statuses:
            activity.record("entra", status)
    assert first.flush() and second.flush()
    assert not first.flush()  # nothing left to write
    second.record("entra", 201)
    second.flush()
    with runtime.store.read() as session:
        rows = [(r.client, r.minute, r.requests, r.errors) for r in session.scalars(select(ScimClientMinute))]
    assert rows == [("entra", minute_of(now), 6, 2)]

    def panel(at):  # type: ignore[no-untyped-def]
        return [(c.name, c.requests_last_hour, c.errors_last_hour) for c in client_activity(runtime, at)]

    assert panel(now + timedelta(minutes=59)) == [("entra", 6, 2)]
    assert panel(now + timedelta(minutes=60)) == [("entra", 0, 0)]


class Unreachable:
    """A store whose database is away."""

    def __init__(self, is_sqlite: bool):
        self.is_sqlite = is_sqlite

    def write(self):  # type: ignore[no-untyped-def]
        from sqlalchemy.exc import OperationalError

        raise OperationalError("connect", {}, Exception("database is away"))


def test_a_failed_flush_keeps_the_counts_for_the_next(runtime):
    now = utcnow()
    activity = ScimActivity(Unreachable(runtime.store.is_sqlite), lambda: now)  # type: ignore[arg-type]
    activity.record("entra", 200)
    activity.record("entra", 404)
    assert activity.flush()  # tried, failed, kept
    activity.record("entra", 200)
    activity.store = runtime.store
    assert activity.flush()
    with runtime.store.read() as session:
        row = session.scalar(select(ScimClientMinute))
        assert (row.client, row.requests, row.errors) == ("entra", 3, 1)


def test_stop_ends_the_flush_thread_and_writes_what_is_left(runtime):
    """The daemon's stop (Runtime.close) loses no count and leaves no thread behind."""
    now = utcnow()
    activity = ScimActivity(runtime.store, lambda: now, flush_seconds=60)
    activity.record("entra", 200)
    thread = activity._thread
    assert thread is not None and thread.is_alive()
    activity.stop()
    assert not thread.is_alive()
    with runtime.store.read() as session:
        assert [(r.client, r.requests) for r in session.scalars(select(ScimClientMinute))] == [("entra", 1)]
    activity.record("entra", 200)  # a late request is counted, and written by the next stop
    assert activity._thread is thread
    activity.stop()
    with runtime.store.read() as session:
        assert session.scalar(select(ScimClientMinute.requests)) == 2
