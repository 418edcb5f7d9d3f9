"""Batched writes of the service layer (``create_many`` of users and groups,
``change_members_many``), on SQLite and on PostgreSQL: the same rules, rows and audit
as the one-at-a-time ORM path, a batch written whole or not at all."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bridge.config import Config, load_config_data
from bridge.services import Actor, Services
from bridge.services.errors import Conflict, InvalidValue, NotFound, SourceConflict, UserNameTaken
from bridge.services.groups import MemberDelta
from bridge.store.models import AuditEvent, AuthzChange, Group, GroupGroupMember, GroupUserMember, User, UserKind

OPERATOR = Actor(name="cli:test", channel="cli")
ENTRA = Actor.scim_client("entra")
RAW = {"mapping": {"rules": [{"source": "scim", "attribute": "department", "value": "Customer Service",
                              "customer": "{employeeNumber}", "kind": "external"}]},
       "scim": {"clients": {"entra": {"customers": ["*"]}}}}  # the rule reads the number from entra's attributes


@pytest.fixture
def config() -> Config:
    return load_config_data(RAW)


def counts(services: Services) -> tuple[int, int]:
    """(users, audit events) in the store."""
    with services.store.read() as session:
        return (session.scalar(select(func.count()).select_from(User)),
                session.scalar(select(func.count()).select_from(AuditEvent)))


def audit_of(services: Services, user_id: str) -> AuditEvent:
    with services.store.read() as session:
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.target_id == user_id))
        return event


def row(name: str, **fields: Any) -> dict[str, Any]:
    return {"user_name": name, "email": f"{name.lower()}@example.org", **fields}


def test_create_many_creates_every_row_in_order(services):
    with services.unit(ENTRA) as uow:
        ids = uow.users.create_many([row("Anna.Berg"), row("bert.cole"), row("Cleo.Dorn")])
        assert [uow.users.get(i).user_name for i in ids] == ["Anna.Berg", "bert.cole", "Cleo.Dorn"]
    assert len(set(ids)) == 3
    assert counts(services) == (3, 3)
    with services.unit(ENTRA) as uow:
        assert uow.users.create_many([]) == []


def test_a_name_twice_in_one_batch_refuses_the_batch(services):
    with pytest.raises(UserNameTaken, match="same batch"), services.unit(ENTRA) as uow:
        uow.users.create_many([row("Anna.Berg"), row("bert.cole"), row(" ANNA.berg ")])
    assert counts(services) == (0, 0)


def test_a_name_taken_in_the_store_refuses_the_batch(services):
    with services.unit(OPERATOR) as uow:
        uow.users.create(user_name="Anna.Berg", email="anna@example.org")
    before = counts(services)
    with pytest.raises(UserNameTaken, match="already taken"), services.unit(ENTRA) as uow:
        uow.users.create_many([row("bert.cole"), row("anna.BERG"), row("cleo.dorn")])
    assert counts(services) == before


def test_a_name_lost_at_the_flush_refuses_the_batch_and_leaves_the_transaction_usable(services, monkeypatch):
    """The race the lookup cannot see (another writer commits the name in between): the
    unique index refuses the flush, the batch's savepoint goes, the error names the name."""
    with services.unit(OPERATOR) as uow:
        uow.users.create(user_name="Anna.Berg", email="anna@example.org")
    with services.unit(ENTRA) as uow:
        monkeypatch.setattr(type(uow.users), "_stored_keys", lambda self, rows: set())
        with pytest.raises(UserNameTaken, match="'ANNA.berg' is already taken"):
            uow.users.create_many([row("bert.cole"), row("ANNA.berg")])
        monkeypatch.undo()
        uow.users.create_many([row("cleo.dorn")])  # the same transaction goes on
    with services.store.read() as session:
        assert sorted(session.scalars(select(User.user_name))) == ["Anna.Berg", "cleo.dorn"]
    assert counts(services) == (2, 2)


def test_create_many_applies_the_local_rules_to_every_row(services):
    for bad, match in [(row("ab"), "shorter than 5"), (row("has space"), "white space"),
                       ({"user_name": "no.email"}, "e-mail address"), (row("x.y.z", email="nope"), "e-mail")]:
        with pytest.raises(InvalidValue, match=match), services.unit(OPERATOR) as uow:
            uow.users.create_many([row("fine.user"), bad])
        assert counts(services) == (0, 0)
    with pytest.raises(InvalidValue, match="unknown user fields: password"), services.unit(OPERATOR) as uow:
        uow.users.create_many([row("fine.user", password="x")])
    with services.unit(ENTRA) as uow:  # a source's names are its own business
        ids = uow.users.create_many([row("ab"), {"user_name": "no mail"}])
        assert [uow.users.get(i).user_name for i in ids] == ["ab", "no mail"]


def test_create_many_writes_what_create_writes(services):
    """One user created each way: the same row (but id and name) and the same audit event."""
    with services.unit(OPERATOR) as uow:
        uow.customers.create("4711", "Heidelberg")  # no remote access: its external users are inactive
    fields = {"display_name": "Pat Doe", "given_name": "Pat", "family_name": "Doe", "email": "pat@example.org",
              "external_id": "ext-1", "attributes": {"department": "Customer Service", "employeeNumber": "4711"}}
    with services.unit(ENTRA) as uow:
        one = uow.users.create(user_name="pat.one", **fields).id
    with services.unit(ENTRA) as uow:
        (many,) = uow.users.create_many([{"user_name": "pat.many", **fields}])
    events = [audit_of(services, one), audit_of(services, many)]
    for event in events:
        assert (event.action, event.actor, event.source, event.channel) == ("user.create", "entra", "scim:entra",
                                                                            "scim")
    changes = [dict(event.changes) for event in events]
    assert changes[0].pop("user_name") == [None, "pat.one"]
    assert changes[1].pop("user_name") == [None, "pat.many"]
    assert changes[0] == changes[1]
    # the rules ran: mapping rule (external, customer), remote access (inactive), e-mail in SCIM emails
    assert changes[0]["kind"] == [None, "external"]
    assert changes[0]["active"] == [None, False]
    assert changes[0]["attributes"][1]["emails"] == [{"value": "pat@example.org", "primary": True}]
    with services.store.read() as session:
        a, b = session.get(User, one), session.get(User, many)
        columns = [c.key for c in User.__table__.columns if c.key not in ("id", "user_name", "user_name_key",
                                                                          "created_at", "updated_at")]
        assert {c: getattr(a, c) for c in columns} == {c: getattr(b, c) for c in columns}
        assert b.kind == UserKind.external and b.customer_id is not None and b.source == "scim:entra"
        # ... and the customer rules' memberships (RemoteUsers) came with it, for both
        for uid in (one, many):
            assert session.scalars(select(Group.display_name).join(GroupUserMember)
                                   .where(GroupUserMember.user_id == uid)).all() == ["RemoteUsers"]


def test_a_failing_rule_refuses_the_batch(services):
    """The mapping rule names a customer that does not exist: refused, nothing written."""
    bad = row("pat.doe", attributes={"department": "Customer Service", "employeeNumber": "999"})
    with pytest.raises(InvalidValue, match="no customer with number '999'"), services.unit(ENTRA) as uow:
        uow.users.create_many([row("fine.user"), bad])
    assert counts(services) == (0, 0)


# -- groups: batched creation and membership changes (the LDAP sync's path) ------------------

LDAP = Actor.ldap_sync("corp")


def group_row(group: Group) -> dict[str, Any]:
    """A group's columns but those that differ by nature (id, time stamps, name)."""
    skip = {"id", "created_at", "updated_at", "display_name", "display_name_key", "source_id", "ldap_dn"}
    return {c.key: getattr(group, c.key) for c in Group.__table__.columns if c.key not in skip}


def events(services: Services, target_id: str) -> list[tuple[str, dict[str, Any]]]:
    with services.store.read() as session:
        return [(e.action, dict(e.changes)) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.target_id == target_id).order_by(AuditEvent.id))]


def test_group_create_many_writes_what_create_writes(services):
    with services.unit(LDAP) as uow:
        one = uow.groups.create("Ops", source_id="g-1", ldap_dn="cn=ops,dc=x").id
    with services.unit(LDAP) as uow:
        many, other = uow.groups.create_many([
            {"display_name": " Ops ", "source_id": "g-2", "ldap_dn": "cn=ops2,dc=x"},
            {"display_name": "Sales", "source_id": "g-3", "ldap_dn": "cn=sales,dc=x"}])
    with services.store.read() as session:
        a, b = session.get(Group, one), session.get(Group, many)
        assert group_row(a) == group_row(b) and a.source == "ldap:corp" and a.version == 1
        assert (b.display_name, b.display_name_key) == ("Ops", "ops")
    (created_one,), (created_many,) = events(services, one), events(services, many)
    assert created_one[0] == created_many[0] == "group.create"
    for changes, dn, sid in ((created_one[1], "cn=ops,dc=x", "g-1"), (created_many[1], "cn=ops2,dc=x", "g-2")):
        assert changes.pop("ldap_dn") == [None, dn] and changes.pop("source_id") == [None, sid]
    assert created_one[1] == created_many[1]
    with pytest.raises(InvalidValue, match="displayName is required"), services.unit(LDAP) as uow:
        uow.groups.create_many([{"display_name": "Fine"}, {"display_name": "  "}])
    with services.store.read() as session:  # refused whole: "Fine" is not there
        assert session.scalar(select(func.count()).select_from(Group).where(Group.display_name == "Fine")) == 0


def make_users_and_groups(services: Services, users: int, groups: int) -> tuple[list[str], list[str]]:
    with services.unit(LDAP) as uow:
        user_ids = uow.users.create_many([{"user_name": f"m{i:03d}", "email": f"m{i}@x.org"} for i in range(users)])
        group_ids = uow.groups.create_many([{"display_name": f"g{i}"} for i in range(groups)])
    return user_ids, group_ids


def memberships(services: Services, group_id: str) -> tuple[set[str], set[str], int]:
    """(user ids, child group ids, version) of a group."""
    with services.store.read() as session:
        users = set(session.scalars(select(GroupUserMember.user_id).where(GroupUserMember.group_id == group_id)))
        children = set(session.scalars(select(GroupGroupMember.child_group_id)
                                       .where(GroupGroupMember.group_id == group_id)))
        return users, children, session.get(Group, group_id).version


def test_change_members_many_writes_what_change_members_writes(services):
    """The same changes to two twin groups, through the ORM one group at a time and in
    one batch: the same members, versions, audit events and change log (users[5] was
    never a member: removing it is no change)."""
    users, (single, batched, child_a, child_b) = make_users_and_groups(services, 6, 4)
    first = {"add_users": set(users[:4]), "add_groups": {child_a}}
    second = {"add_users": {users[4]}, "remove_users": {users[0], users[5]}, "add_groups": {child_b},
              "remove_groups": {child_a}}
    for step in (first, second):
        logged = []
        with services.unit(LDAP) as uow:
            uow.groups.change_members(uow.groups.get(single), **step)
        logged.append(latest_change_log(services))
        with services.unit(LDAP) as uow:
            uow.groups.change_members_many([MemberDelta(batched, **step)])
        logged.append(latest_change_log(services))
        assert logged[0] == logged[1]  # the same users and groups for the check caches to drop
    assert logged[1] == {("user", users[0]), ("user", users[4]), ("group", child_a), ("group", child_b)}
    assert memberships(services, single) == memberships(services, batched)
    assert memberships(services, batched) == ({*users[1:5]}, {child_b}, 3)
    assert [e for e in events(services, single) if e[0] == "group.members"] == \
        [e for e in events(services, batched) if e[0] == "group.members"]


def latest_change_log(services: Services) -> set[tuple[str, str]]:
    """The subjects of the newest generation of the authorization change log."""
    with services.store.read() as session:
        newest = session.scalar(select(func.max(AuthzChange.generation)))
        rows = session.execute(select(AuthzChange.subject_type, AuthzChange.subject_id)
                               .where(AuthzChange.generation == newest))
        return {(kind, subject) for kind, subject in rows}


def test_change_members_many_refuses_the_whole_batch(services):
    users, (one, two, three) = make_users_and_groups(services, 2, 3)
    with services.unit(LDAP) as uow:
        uow.groups.change_members_many([MemberDelta(one, add_groups={two}), MemberDelta(two, add_groups={three})])
    before = [memberships(services, g) for g in (one, two, three)]
    bad = [
        ([MemberDelta(one, add_users={users[0]}), MemberDelta(two, add_users={"no-such-user"})],
         InvalidValue, "no user with id no-such-user"),
        ([MemberDelta(one, add_users={users[1]}), MemberDelta(three, add_groups={one})], Conflict, "cycle"),
        ([MemberDelta(one, add_users={users[1]}), MemberDelta("no-such-group", add_users={users[1]})],
         NotFound, "no group with id"),
    ]
    for deltas, error, match in bad:
        with pytest.raises(error, match=match), services.unit(LDAP) as uow:
            uow.groups.change_members_many(deltas)
        assert [memberships(services, g) for g in (one, two, three)] == before
    with services.unit(Actor.scim_client("entra")) as uow:  # another source's group: not without a rule
        scim_group = uow.groups.create("Entra group").id
    with pytest.raises(SourceConflict), services.unit(LDAP) as uow:
        uow.groups.change_members_many([MemberDelta(one, add_users={users[1]}),
                                        MemberDelta(scim_group, add_users={users[1]})])
    assert [memberships(services, g) for g in (one, two, three)] == before


def test_a_batch_closes_its_sources_open_conflicts_over_the_names_it_takes(services):
    """entra was refused 'Anna.Berg' while another source held it (an open conflict); the name
    is free again and entra's next batch takes it: that conflict closes, and neither another
    source's conflict over the same name nor entra's over a name it did not take."""
    from bridge.services.conflicts import USER_NAME, ConflictNote, open_conflicts, record

    with services.unit(OPERATOR) as uow:
        record(uow.session, OPERATOR, [
            ConflictNote(USER_NAME, "scim:entra", "ANNA.berg", "scim:okta", "held by okta"),
            ConflictNote(USER_NAME, "scim:okta", "Anna.Berg", "scim:entra", "held by entra"),
            ConflictNote(USER_NAME, "scim:entra", "Zoe.Yuen", "scim:okta", "held by okta"),
        ])
    with services.unit(ENTRA) as uow:
        uow.users.create_many([row("Anna.Berg"), row("bert.cole")])
    with services.store.read() as session:
        still_open = sorted((c.source, c.subject) for c in open_conflicts(session))
    assert still_open == [("scim:entra", "Zoe.Yuen"), ("scim:okta", "Anna.Berg")]
