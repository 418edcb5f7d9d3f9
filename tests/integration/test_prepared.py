"""bridge.store.prepared against SQLAlchemy on the same statements, on SQLite and PostgreSQL:
the rows a Prepared reads hold what ``Connection.execute`` returns (enums, UTC datetimes,
JSON, NULLs, the client's visible sources expanded into the IN list), its values are bound
and never spliced into the SQL, it reads inside the transaction it is given, and a
statement it cannot run as built is refused when it is prepared."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Integer, String, bindparam, select
from sqlalchemy.exc import DBAPIError

from bridge.names import identity_key
from bridge.scim import convert
from bridge.scim.filters import SqlDialect, scim_key
from bridge.scim.storage import _USER_BY_ID, lookup_where
from bridge.services import Actor
from bridge.services.visibility import Visibility
from bridge.store.models import User, UserKind
from bridge.store.prepared import Prepared

NAMES = ["plain@example.com", "Ünïcødé.Nàme@example.com", "o'brien@example.com", "x' OR '1'='1"]


def _page(store: Any, attribute: str, visibility: Visibility) -> Any:
    where = lookup_where(SqlDialect(store.engine.dialect.name), attribute, visibility)
    return (select(*convert.USER_DOCUMENT_COLUMNS).where(*where).order_by(User.id)
            .limit(bindparam("count", type_=Integer)))


@pytest.fixture
def people(services: Any) -> list[str]:
    """Users of two SCIM clients: one with every column and JSON attributes, the others plain."""
    ids = []
    with services.unit(Actor.scim_client("entra")) as uow:
        full = uow.users.create(user_name=NAMES[0], display_name="Plain Person", given_name="Plain",
                                family_name="Person", email=NAMES[0], preferred_language="de-CH",
                                timezone="Europe/Zurich", active=False, kind=UserKind.internal,
                                external_id="ext-1",
                                attributes={"title": "Ops", "emails": [{"value": NAMES[0], "primary": True}],
                                            "department": "IT"})
        ids.append(full.id)
        ids += uow.users.create_many([{"user_name": name} for name in NAMES[1:3]])
    with services.unit(Actor.scim_client("okta")) as uow:
        ids += uow.users.create_many([{"user_name": NAMES[3], "external_id": "ext-1"}])
    return ids


@pytest.mark.parametrize("sources", [("scim:entra",), ("scim:entra", "scim:okta"), None])
def test_a_prepared_lookup_reads_the_rows_sqlalchemy_reads(store, people, sources):
    visibility = Visibility(frozenset(sources)) if sources is not None else Visibility.everything()
    for attribute in ("userName", "externalId"):
        statement = _page(store, attribute, visibility)
        given = ["key", "value", "count"] if attribute == "userName" else ["value", "count"]
        prepared = Prepared(statement, store.engine.dialect, given)
        for value in [*NAMES, NAMES[1].upper(), "ext-1", "nobody"]:
            params: dict[str, Any] = {"value": scim_key(value) if attribute == "userName" else value, "count": 10}
            if attribute == "userName":
                params["key"] = identity_key(value)
            with store.reading() as connection:
                expected = connection.execute(statement, params).all()
                rows = prepared.rows(connection, params)
            assert [tuple(row) for row in rows] == [tuple(row) for row in expected], (attribute, value)
            assert [row._asdict() for row in rows] == [row._asdict() for row in expected]


def test_a_prepared_read_by_id_reads_every_column_as_sqlalchemy_does(store, people):
    prepared = Prepared(_USER_BY_ID, store.engine.dialect, ["id"])
    with store.reading() as connection:
        for user_id in people:
            (row,) = prepared.rows(connection, {"id": user_id})
            assert row == connection.execute(_USER_BY_ID, {"id": user_id}).one()
        full = prepared.rows(connection, {"id": people[0]})[0]
        assert full.kind is UserKind.internal and full.active is False
        assert full.created_at.utcoffset() is not None  # UTC-aware, as the model's type reads it
        assert full.attributes["emails"][0]["value"] == NAMES[0] and full.in_groups is False
        assert prepared.rows(connection, {"id": "' OR '1'='1"}) == []


def test_values_are_bound_not_spliced(store, people):
    """A name shaped like SQL finds only itself, and the SQL text holds no value given at a run."""
    statement = _page(store, "userName", Visibility.everything())
    prepared = Prepared(statement, store.engine.dialect, ["key", "value", "count"])
    hostile = NAMES[3]
    with store.reading() as connection:
        rows = prepared.rows(connection, {"key": identity_key(hostile), "value": scim_key(hostile), "count": 10})
    assert [row.user_name for row in rows] == [hostile]
    assert "OR '1'='1" not in prepared.sql and "entra" not in prepared.sql


def test_a_prepared_read_sees_its_transactions_own_writes(services, store):
    """Run on a write's connection (as StoreStorage does after a flush), it reads what the
    transaction wrote and has not committed; another transaction does not."""
    prepared = Prepared(_USER_BY_ID, store.engine.dialect, ["id"])
    with services.unit(Actor.scim_client("entra")) as uow:
        made = uow.users.create(user_name="pending@example.com")
        uow.session.flush()
        inside = prepared.rows(uow.session.connection(), {"id": made.id})
        if not store.is_sqlite:  # SQLite: the writer holds the database; a reader sees the last commit
            with store.reading() as other:
                assert prepared.rows(other, {"id": made.id}) == []
    assert [row.user_name for row in inside] == ["pending@example.com"]
    with store.reading() as connection:
        assert [row.user_name for row in prepared.rows(connection, {"id": made.id})] == ["pending@example.com"]


def test_what_a_prepared_statement_cannot_run_is_refused_when_prepared(store):
    by_name = select(User.id).where(User.user_name == bindparam("name", type_=String))
    with pytest.raises(ValueError, match="no parameter"):
        Prepared(by_name, store.engine.dialect, ["nmae"])
    listed = select(User.id).where(User.id.in_(bindparam("ids", expanding=True)))
    with pytest.raises(ValueError, match="list given at each run"):
        Prepared(listed, store.engine.dialect, ["ids"])


def test_a_drivers_error_is_raised_as_sqlalchemys(store, people):
    """As Connection.execute raises it: bridge.store.busy and the SCIM error handling read
    SQLAlchemy's errors, not the driver's."""
    statement = _page(store, "userName", Visibility.everything())
    prepared = Prepared(statement, store.engine.dialect, ["key", "value", "count"])
    with store.reading() as connection, pytest.raises(DBAPIError) as raised:
        prepared.rows(connection, {"key": "k", "value": "v", "count": "not a number"})
    assert not raised.value.connection_invalidated


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_connection_the_database_dropped_is_invalidated_not_pooled_again(store, people):
    prepared = Prepared(_USER_BY_ID, store.engine.dialect, ["id"])
    with store.reading() as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with store.engine.connect() as admin:
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        with pytest.raises(DBAPIError) as raised:
            prepared.rows(connection, {"id": people[0]})
        assert raised.value.connection_invalidated
    for _ in range(3):  # every connection the pool gives out next is alive
        with store.reading() as connection:
            assert [row.id for row in prepared.rows(connection, {"id": people[0]})] == [people[0]]


def test_a_sessions_prepared_read_sees_its_pending_changes_and_reads_what_sqlalchemy_reads(store, people):
    """session_rows in a write session: what the session holds pending is flushed first (a
    query of the session would see it), the rows equal session.execute's, and a session no
    Store made (no cache in its info) reads through session.execute."""
    from sqlalchemy.orm import Session

    from bridge.store.prepared import session_rows

    by_key = select(User.id, User.user_name, User.active).where(User.user_name_key == bindparam("key"))
    with store.write() as session:
        pending = User(user_name="pending.person", user_name_key=identity_key("pending.person"), source="local")
        session.add(pending)  # not flushed yet
        for name in ("pending.person", NAMES[1], "nobody.here"):
            wanted = session.execute(by_key, {"key": identity_key(name)}).all()
            got = session_rows(session, by_key, {"key": identity_key(name)})
            assert [tuple(r) for r in got] == [tuple(r) for r in wanted], name
        assert session_rows(session, by_key, {"key": identity_key("pending.person")})[0].id == pending.id
        session.rollback()
    with Session(store.engine) as plain:
        assert [tuple(r) for r in session_rows(plain, by_key, {"key": identity_key(NAMES[0])})] == \
            [tuple(r) for r in plain.execute(by_key, {"key": identity_key(NAMES[0])}).all()]
