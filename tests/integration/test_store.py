"""The store on SQLite and PostgreSQL: migrations build exactly the models' schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from bridge.store import Store, migrate
from bridge.store.models import (
    Base,
    Customer,
    Grant,
    Group,
    GroupGroupMember,
    GroupUserMember,
    Role,
    ScopeNode,
    User,
)


def test_upgrade_from_nothing_reaches_head(db_url):
    store = Store(db_url)
    assert migrate.current_revision(store.engine) is None
    before, after = migrate.upgrade(store.engine)
    assert (before, after) == (None, migrate.head_revision())
    assert migrate.upgrade(store.engine) == (after, after)  # idempotent
    store.dispose()


def test_migrations_match_the_models(store):
    """Autogenerate against the migrated database finds nothing to do."""
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_every_model_table_exists(store):
    tables = set(inspect(store.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables


def test_timestamps_come_back_as_aware_utc(store):
    moment = datetime(2026, 3, 8, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    with store.write() as session:
        session.add(User(id="u1", user_name="tz.user", user_name_key="tz.user", locked_until=moment))
    with store.read() as session:
        locked = session.get(User, "u1").locked_until
    assert locked == moment and locked.tzinfo == UTC


def test_naive_timestamps_are_refused(store):
    with pytest.raises(Exception, match="naive"), store.write() as session:
        session.add(User(id="u1", user_name="tz.user", user_name_key="tz.user", locked_until=datetime(2026, 1, 1)))
        session.flush()


def test_deleting_a_user_removes_memberships_and_grants(store):
    with store.write() as session:
        session.add_all([
            ScopeNode(id="instance", level="instance", name="instance"),
            Role(id="r1", name="viewer"),
            User(id="u1", user_name="del.user", user_name_key="del.user"),
            Group(id="g1", display_name="G", display_name_key="g"),
            Group(id="g2", display_name="H", display_name_key="h"),
        ])
        session.flush()
        session.add_all([
            GroupUserMember(group_id="g1", user_id="u1"),
            GroupGroupMember(group_id="g1", child_group_id="g2"),
            Grant(role_id="r1", scope_id="instance", user_id="u1"),
            Grant(role_id="r1", scope_id="instance", group_id="g2"),
        ])
    with store.write() as session:
        session.delete(session.get(User, "u1"))
    with store.read() as session:
        assert session.scalars(select(GroupUserMember)).all() == []
        assert [g.group_id for g in session.scalars(select(Grant))] == ["g2"]
        assert session.scalars(select(GroupGroupMember)).one().child_group_id == "g2"


def test_a_grant_goes_to_a_user_or_a_group_never_both(store):
    with store.write() as session:
        session.add_all([ScopeNode(id="instance", level="instance", name="instance"), Role(id="r1", name="viewer"),
                         User(id="u1", user_name="both.user", user_name_key="both.user"),
                         Group(id="g1", display_name="G", display_name_key="g")])
    for holders in ({"user_id": "u1", "group_id": "g1"}, {}):
        with pytest.raises(Exception, match="(?i)check|constraint"), store.write() as session:
            session.add(Grant(role_id="r1", scope_id="instance", **holders))


def test_the_same_grant_cannot_be_given_twice(store):
    with store.write() as session:
        session.add_all([ScopeNode(id="instance", level="instance", name="instance"), Role(id="r1", name="viewer"),
                         User(id="u1", user_name="twice.user", user_name_key="twice.user")])
        session.flush()
        session.add(Grant(role_id="r1", scope_id="instance", user_id="u1"))
    with pytest.raises(Exception, match="(?i)unique"), store.write() as session:
        session.add(Grant(role_id="r1", scope_id="instance", user_id="u1"))


def test_a_customer_number_is_unique_but_ids_are_not_reused(store):
    with store.write() as session:
        old = Customer(number="12345", name="Heidelberg")
        session.add(old)
    with store.write() as session:
        session.delete(session.get(Customer, old.id))
    with store.write() as session:
        new = Customer(number="12345", name="Heidelberg")
        session.add(new)
    assert new.id != old.id


@pytest.mark.parametrize("size", [0, 1, 3, 70_000])
def test_among_takes_any_number_of_values_in_one_parameter(store, size):
    """bridge.store.among: ``IN`` with the values as one parameter, on both backends, past
    PostgreSQL's 65,535 parameters and SQLite's default 32,766; none matches nothing. Values
    that quote or escape (a JSON array on SQLite, an array literal's delimiters on
    PostgreSQL) are matched as they are."""
    from sqlalchemy import insert

    from bridge.store.among import among
    from bridge.store.models import Group

    odd = ['quo"te', "back\\slash", "com,ma", "{brace}", "nul-free ü ß"]
    names = odd + [f"group {n}" for n in range(40)]
    with store.write() as session:
        session.execute(insert(Group), [{"id": f"id-{name}", "display_name": name, "display_name_key": name,
                                         "source": "scim:entra"} for name in names])
    wanted = [f"id-{name}" for name in odd[:min(size, len(odd))]]
    wanted += [f"id-group {n}" for n in range(max(0, min(size - len(wanted), 40)))]
    values = wanted + [f"absent {n}" for n in range(max(0, size - len(wanted)))]
    with store.read() as session:
        found = set(session.scalars(select(Group.id).where(among(Group.id, values))))
        # the same statement again with other values: its cached compiled form takes the new ones
        again = set(session.scalars(select(Group.id).where(among(Group.id, ["id-group 7", "absent"]))))
    assert found == set(wanted) and len(values) == size
    assert again == {"id-group 7"}
