"""A store too busy to answer (SQLite's write lock held past the busy timeout) is a 503
with Retry-After on the admin API and SCIM, never a 500, and the request did nothing."""

from __future__ import annotations

import sqlite3

import pytest

from bridge.runtime import build_runtime
from bridge.store import Store, db, migrate
from bridge.web import create_app
from tests.fixtures.app import create_token, make_config


@pytest.fixture
def busy_app(tmp_path, monkeypatch):
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 300)  # wait 0.3 s for the lock, not 30
    path = tmp_path / "store.sqlite3"
    store = Store(f"sqlite:///{path}")
    migrate.upgrade(store.engine)
    rt = build_runtime(make_config(data_dir=str(tmp_path)), store=store)
    admin, scim = create_token(rt, "portal", "admin"), create_token(rt, "idp", "scim")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    yield create_app(rt).test_client(), admin, scim, holder, rt
    holder.execute("ROLLBACK")
    holder.close()
    store.dispose()


def test_a_locked_store_is_a_503_with_retry_after(busy_app):
    client, admin, scim, holder, rt = busy_app
    api = client.post("/api/v1/users", json={"user_name": "busy.user", "email": "b@example.org"},
                      headers={"Authorization": f"Bearer {admin}"})
    assert api.status_code == 503 and api.headers["Retry-After"] == "2" and api.json["error"]["code"] == "busy"
    created = client.post("/scim/v2/Users", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                                  "userName": "busy.scim"},
                          headers={"Authorization": f"Bearer {scim}", "Content-Type": "application/scim+json"})
    assert created.status_code == 503 and created.headers["Retry-After"] == "2", created.json
    holder.execute("ROLLBACK")
    holder.execute("BEGIN")
    with rt.store.read() as session:
        from sqlalchemy import select

        from bridge.store.models import User

        assert session.scalars(select(User.user_name)).all() == []  # nothing was written


def test_reads_take_no_write_lock(busy_app):
    """A GET of the admin API reads in a read transaction: it answers while another writer
    holds SQLite's write lock (before, 11 GET routes opened a write unit just to read)."""
    client, admin, scim, holder, rt = busy_app
    headers = {"Authorization": f"Bearer {admin}"}
    holder.execute("ROLLBACK")
    assert client.get("/api/v1/roles", headers=headers).status_code == 200  # the token's use is stamped now
    holder.execute("BEGIN IMMEDIATE")
    for path in ("/api/v1/roles", "/api/v1/scopes", "/api/v1/customers", "/api/v1/rights", "/api/v1/grants"):
        answer = client.get(path, headers=headers)
        assert answer.status_code == 200, (path, answer.status_code, answer.json)
