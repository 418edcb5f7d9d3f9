"""Batched user creation (``UserService.create_many``), on SQLite and on PostgreSQL: the
same rules and audit as ``create``, a batch written whole or not at all."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bridge.config import Config, load_config_data
from bridge.services import Actor, Services
from bridge.services.errors import InvalidValue, UserNameTaken
from bridge.store.models import AuditEvent, Group, GroupUserMember, User, UserKind

OPERATOR = Actor(name="cli:test", channel="cli")
ENTRA = Actor.scim_client("entra")
RAW = {"mapping": {"rules": [{"source": "scim", "attribute": "department", "value": "Customer Service",
                              "customer": "{employeeNumber}", "kind": "external"}]}}


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
        users = uow.users.create_many([row("Anna.Berg"), row("bert.cole"), row("Cleo.Dorn")])
        ids = [u.id for u in users]
    assert [u.user_name for u in users] == ["Anna.Berg", "bert.cole", "Cleo.Dorn"]
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
        assert [u.user_name for u in uow.users.create_many([row("ab"), {"user_name": "no mail"}])] == \
            ["ab", "no mail"]


def test_create_many_writes_what_create_writes(services):
    """One user created each way: the same row (but id and name) and the same audit event."""
    with services.unit(OPERATOR) as uow:
        uow.customers.create("4711", "Heidelberg")  # no remote access: its external users are inactive
    fields = {"display_name": "Pat Doe", "given_name": "Pat", "family_name": "Doe", "email": "pat@example.org",
              "external_id": "ext-1", "attributes": {"department": "Customer Service", "employeeNumber": "4711"}}
    with services.unit(ENTRA) as uow:
        one = uow.users.create(user_name="pat.one", **fields).id
    with services.unit(ENTRA) as uow:
        (many,) = [u.id for u in uow.users.create_many([{"user_name": "pat.many", **fields}])]
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
