"""What one SCIM write costs the store, on SQLite and PostgreSQL: the SQL statements of a
``POST /Users`` and of a ``PATCH /Users/{id}`` (as bench/scim_bench.py sends them) stay
within the bounds measured when the write path was cut down (bench/scim_write_profile.py
shows them one by one), none of them reads the whole users table, and a create without a
password hashes nothing. A guard of the work per write, not of its speed: a check, an
audit event or a change-log row the write needs is among the statements counted."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import event, func, select

from bridge.store.models import AuditEvent, AuthzChange, User
from tests.fixtures.app import create_token, make_config
from tests.integration.test_scim_http import CORE, Scim

# Statements of one request, BEGIN left out (SQLite's BEGIN IMMEDIATE is sent on the driver's
# connection, PostgreSQL's BEGIN is the driver's own). Measured: POST 5 on SQLite, 7 on
# PostgreSQL (a savepoint around the INSERT of the user, whose name a concurrent writer can take
# first there); PATCH 8 on both. Before the write path was cut down: POST 11 and PATCH 12 on
# both, and on SQLite a read of the whole users table in each.
CREATE_STATEMENTS = {"sqlite": 5, "postgresql": 7}
UPDATE_STATEMENTS = {"sqlite": 8, "postgresql": 8}
WHOLE_USERS_TABLE = re.compile(r"^SCAN users\b")


@pytest.fixture
def config():
    return make_config(scim={"clients": {"entra": {"passwords": True}}})  # a client that may send passwords


@contextmanager
def statements(runtime) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def count(_conn, _cursor, statement, parameters, _context, _many):  # noqa: ANN001
        if not statement.lstrip().upper().startswith("BEGIN"):
            seen.append((statement, parameters))

    event.listen(runtime.store.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(runtime.store.engine, "before_cursor_execute", count)


def whole_table_reads(runtime, seen: list[tuple[str, Any]]) -> list[str]:
    """The statements SQLite's plan answers by reading every user (SQLite only: PostgreSQL's
    planner picks a scan of a small table whatever its indexes)."""
    if not runtime.store.is_sqlite:
        return []
    raw = runtime.store.engine.raw_connection()
    try:
        found = []
        for statement, parameters in seen:
            if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                plan = raw.cursor().execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
                found += [f"{row[3]}: {statement}" for row in plan if WHOLE_USERS_TABLE.match(row[3])]
        return found
    finally:
        raw.close()


def test_a_scim_create_and_update_stay_within_their_statements(client, runtime, monkeypatch):
    backend = runtime.store.engine.dialect.name
    entra = Scim(client, create_token(runtime, "entra", "scim"))
    for i in range(3):  # the store is not empty, the token is known
        entra.create_user(f"warm{i}@example.com")
    hashed: list[str] = []
    hash_password = PasswordHasher.hash

    def counted(self: PasswordHasher, password: str | bytes, **kwargs: Any) -> str:
        hashed.append(str(password))
        return hash_password(self, password, **kwargs)

    monkeypatch.setattr(PasswordHasher, "hash", counted)

    with statements(runtime) as created:
        response = entra.post("/Users", {"schemas": [CORE], "userName": "ada@example.com",
                                         "name": {"givenName": "Ada", "familyName": "Lovelace"},
                                         "emails": [{"value": "ada@example.com", "type": "work", "primary": True}]})
    assert response.status_code == 201, response.json
    user_id = response.json["id"]
    assert hashed == []  # no password sent: nothing hashed
    assert len(created) <= CREATE_STATEMENTS[backend], [s for s, _ in created]
    assert whole_table_reads(runtime, created) == []

    with runtime.store.read() as session:  # what the statements wrote is the whole create
        user = session.get(User, user_id)
        assert user is not None and (user.given_name, user.email) == ("Ada", "ada@example.com")
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.target_id == user_id, AuditEvent.action == "user.create")) == 1
        generation = session.scalar(select(func.max(AuthzChange.generation))) or 0

    with statements(runtime) as updated:
        response = entra.patch(f"/Users/{user_id}", [{"op": "replace", "path": "displayName", "value": "Ada L."},
                                                     {"op": "replace", "path": "active", "value": False}])
    assert response.status_code == 200, response.json
    assert (response.json["displayName"], response.json["active"]) == ("Ada L.", False)
    assert len(updated) <= UPDATE_STATEMENTS[backend], [s for s, _ in updated]
    assert whole_table_reads(runtime, updated) == []

    with runtime.store.read() as session:  # the audit event and the check caches' change-log row
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.target_id == user_id, AuditEvent.action == "user.deactivate")) == 1
        assert session.scalars(select(AuthzChange.subject_id).where(
            AuthzChange.generation > generation)).all() == [user_id]
    assert hashed == []
