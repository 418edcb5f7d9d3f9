"""Customer rules, whoever writes: rights-groups, RemoteUsers/RemoteAdministrators, sales
representatives, remote access, re-used numbers, agencies (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bridge.config import Config, load_config_data
from bridge.mapping.apply import apply_config
from bridge.mapping.engine import Authorizer
from bridge.services import Actor, Services
from bridge.services.errors import Conflict, InvalidValue
from bridge.store.models import AuditEvent, Group, GroupUserMember, User

OPERATOR = Actor(name="cli:test", channel="cli")
ENTRA = Actor.scim_client("entra")
RAW = {
    "roles": [{"name": "customer_portal", "rights": ["jobs.read", "files.upload"]}],
    "mapping": {"rules": [{"source": "scim", "attribute": "department", "value": "Customer Service",
                           "customer": "{employeeNumber}", "kind": "external"}]},
    # the rule reads the customer from the IdP's attributes: the IdP names customers
    "scim": {"clients": {"entra": {"customers": ["*"]}}},
}


@pytest.fixture
def config() -> Config:
    return load_config_data(RAW)


@pytest.fixture
def world(services: Services, config: Config) -> Services:
    apply_config(services, config)
    return services


def customer(services: Services, number: str = "12345", name: str = "Heidelberg", **fields) -> str:
    with services.unit(OPERATOR) as uow:
        return uow.customers.create(number, name, **fields).id


def user(services: Services, name: str, actor: Actor = OPERATOR, **fields) -> str:
    with services.unit(actor) as uow:
        return uow.users.create(user_name=name, email=f"{name}@example.org", **fields).id


def memberships(services: Services, user_id: str) -> set[tuple[str, str]]:
    """(group name, origin) of every membership of the user."""
    with services.store.read() as session:
        rows = session.execute(select(Group.display_name, GroupUserMember.origin)
                               .join(GroupUserMember, GroupUserMember.group_id == Group.id)
                               .where(GroupUserMember.user_id == user_id)).all()
    return {(name, origin) for name, origin in rows}


def groups_named(services: Services, name: str) -> list[Group]:
    with services.store.read() as session:
        return list(session.scalars(select(Group).where(Group.display_name == name)))


def is_active(services: Services, user_id: str) -> bool:
    with services.store.read() as session:
        return session.get(User, user_id).active


# -- rights-groups ---------------------------------------------------------------------------


def test_the_rights_group_appears_when_remote_access_is_switched_on_and_follows_renames(world):
    cid = customer(world)
    assert groups_named(world, "X12345-Heidelberg") == []
    with world.unit(OPERATOR) as uow:
        uow.customers.update(uow.customers.get("12345"), remote_access=True)
    (group,) = groups_named(world, "X12345-Heidelberg")
    assert (group.kind.value, group.customer_id, group.source) == ("customer_rights", cid, "local")
    with world.unit(OPERATOR) as uow:
        uow.customers.update(uow.customers.get("12345"), name="Wiesloch")
    assert [g.id for g in groups_named(world, "X12345-Wiesloch")] == [group.id]


@pytest.mark.parametrize("pattern, expected", [
    ("X{number}-{name}", "X12345-Heidelberg"),
    ("K{name}", "KHeidelberg"),
    ("{number}-{short_name}", "12345-HDB"),
    ("Kunde {name}-{number}", "Kunde Heidelberg-12345"),
])
def test_the_rights_group_name_follows_the_configured_pattern(store, pattern, expected):
    services = Services(store, load_config_data({"customers": {"rights_group_name": pattern}}))
    customer(services, short_name="HDB", remote_access=True)
    assert len(groups_named(services, expected)) == 1


def test_a_pattern_with_the_short_name_needs_one(store):
    services = Services(store, load_config_data({"customers": {"rights_group_name": "X{number}-{short_name}"}}))
    with pytest.raises(InvalidValue, match="needs the customer's short name"):
        customer(services, remote_access=True)


def test_the_rights_group_cannot_be_deleted_on_its_own(world):
    customer(world, remote_access=True)
    with pytest.raises(Conflict, match="rights-group"), world.unit(OPERATOR) as uow:
        uow.groups.delete(uow.groups.get(groups_named(world, "X12345-Heidelberg")[0].id))


# -- external users -----------------------------------------------------------------------------


def test_external_users_are_always_in_their_rights_group_and_remote_users(world):
    cid = customer(world, remote_access=True)
    anna = user(world, "anna.extern", kind="external", customer_id=cid)
    boss = user(world, "bert.extern", kind="external", customer_id=cid, customer_admin=True)
    assert memberships(world, anna) == {("X12345-Heidelberg", f"customer:{cid}"), ("RemoteUsers", "external")}
    assert memberships(world, boss) == {("X12345-Heidelberg", f"customer:{cid}"), ("RemoteUsers", "external"),
                                        ("RemoteAdministrators", "external-admin")}
    with world.unit(OPERATOR) as uow:
        uow.users.update(uow.users.get(boss), customer_admin=False)
    assert ("RemoteAdministrators", "external-admin") not in memberships(world, boss)


def test_no_source_can_take_an_external_user_out_of_the_rights_group(world):
    cid = customer(world, remote_access=True)
    anna = user(world, "anna.extern", kind="external", customer_id=cid)
    with world.unit(OPERATOR) as uow:
        group = uow.groups.get(groups_named(world, "X12345-Heidelberg")[0].id)
        uow.groups.set_members(group, [])  # the operator's own membership list of the group
    assert ("X12345-Heidelberg", f"customer:{cid}") in memberships(world, anna)


def test_a_scim_user_matching_the_attribute_rule_becomes_the_customers_external_user(world):
    cid = customer(world, remote_access=True)
    with world.unit(ENTRA) as uow:
        created = uow.users.create(user_name="carla@customer.example",
                                   attributes={"department": "Customer Service", "employeeNumber": "12345"})
        assert (created.kind.value, created.customer_id) == ("external", cid)
        carla = created.id
    assert ("X12345-Heidelberg", f"customer:{cid}") in memberships(world, carla)
    other = customer(world, "777", "Walldorf", remote_access=True)
    with world.unit(ENTRA) as uow:
        uow.users.update(uow.users.get(carla), attributes={"department": "Customer Service",
                                                           "employeeNumber": "777"})
    assert memberships(world, carla) == {("X777-Walldorf", f"customer:{other}"), ("RemoteUsers", "external")}
    with pytest.raises(InvalidValue, match="no customer with number '999'"), world.unit(ENTRA) as uow:
        uow.users.create(user_name="dora@customer.example",
                         attributes={"department": "Customer Service", "employeeNumber": "999"})


def test_an_external_user_turned_internal_leaves_the_customer_groups(world):
    cid = customer(world, remote_access=True)
    anna = user(world, "anna.extern", kind="external", customer_id=cid, customer_admin=True)
    with world.unit(OPERATOR) as uow:
        uow.users.update(uow.users.get(anna), kind="internal", customer_id=None)
    assert memberships(world, anna) == set()


def test_the_rights_groups_grants_reach_its_external_users(world, config):
    cid = customer(world, remote_access=True)
    user(world, "anna.extern", kind="external", customer_id=cid)
    with world.unit(OPERATOR) as uow:
        uow.grants.grant("customer_portal", "instance", group_id=uow.customers.rights_group(cid).id)
    decision = Authorizer(world.store, config).check("anna.extern", "files.upload", "instance", explain=True)
    assert decision.allowed
    assert decision.because[0].via[1].name == "X12345-Heidelberg"
    assert decision.because[0].via[1].origins == (f"customer:{cid}",)


# -- remote access off ---------------------------------------------------------------------------


def test_switching_remote_access_off_deactivates_and_only_a_confirmed_request_deletes(world, config):
    cid = customer(world, remote_access=True)
    anna = user(world, "anna.extern", kind="external", customer_id=cid)
    carla = user(world, "carla@customer.example", ENTRA,
                 attributes={"department": "Customer Service", "employeeNumber": "12345"})
    intern = user(world, "ida.intern")
    with world.unit(OPERATOR) as uow:
        uow.grants.grant("customer_portal", "instance", group_id=uow.customers.rights_group(cid).id)
    authz = Authorizer(world.store, config)
    assert authz.check(anna, "jobs.read", "instance").allowed
    with world.unit(OPERATOR) as uow:
        customer_row = uow.customers.get("12345")
        with pytest.raises(Conflict, match="still has remote access"):
            uow.customers.delete_external_users(customer_row, confirm=True)
        uow.customers.update(customer_row, remote_access=False)
    assert (is_active(world, anna), is_active(world, carla), is_active(world, intern)) == (False, False, True)
    assert not authz.check(anna, "jobs.read", "instance").allowed
    with world.unit(ENTRA) as uow:  # the IdP cannot switch them on again meanwhile
        uow.users.update(uow.users.get(carla), active=True)
    assert not is_active(world, carla)
    with pytest.raises(InvalidValue, match="confirm"), world.unit(OPERATOR) as uow:
        uow.customers.delete_external_users(uow.customers.get("12345"), confirm=False)
    with world.unit(OPERATOR) as uow:
        assert uow.customers.delete_external_users(uow.customers.get("12345"), confirm=True) == 2
    with world.store.read() as session:
        assert session.get(User, anna) is None and session.get(User, intern) is not None


# -- deleting and re-using a number ---------------------------------------------------------------


def test_a_new_customer_with_a_deleted_ones_number_gets_none_of_its_rights_or_users(world, config):
    old = customer(world, remote_access=True)
    anna = user(world, "anna.extern", kind="external", customer_id=old)
    with world.unit(OPERATOR) as uow:
        uow.grants.grant("customer_portal", "instance", group_id=uow.customers.rights_group(old).id)
    with pytest.raises(Conflict, match="has 1 external users"), world.unit(OPERATOR) as uow:
        uow.customers.delete(uow.customers.get("12345"))
    with world.unit(OPERATOR) as uow:
        uow.customers.delete(uow.customers.get("12345"), delete_users=True)
    new = customer(world, remote_access=True)
    assert new != old
    with world.unit(OPERATOR) as uow:
        group = uow.customers.rights_group(new)
        assert uow.grants.find(group_id=group.id) == []
        assert uow.groups.user_member_ids(group, origin=None) == set()
        assert uow.customers.external_users(uow.customers.get("12345")) == []
    with world.store.read() as session:
        assert session.get(User, anna) is None
    assert len(groups_named(world, "X12345-Heidelberg")) == 1


# -- sales representatives -------------------------------------------------------------------------


def sales_rep(services: Services, name: str) -> str:
    rep = user(services, name)
    with services.unit(OPERATOR) as uow:
        sales = uow.session.scalar(select(Group).where(Group.display_name == "CustomerSalesRepresentatives"))
        uow.groups.change_members(sales, add_users=[rep])
    return rep


def test_assigning_a_sales_rep_adds_exactly_the_memberships_that_unassigning_removes(world):
    first = customer(world, remote_access=True)
    second = customer(world, "777", "Walldorf", remote_access=True)
    rep = sales_rep(world, "sven.sales")
    with world.unit(OPERATOR) as uow:  # already in RemoteUsers on their own: that stays
        remote_users = uow.session.scalar(select(Group).where(Group.display_name == "RemoteUsers"))
        uow.groups.change_members(remote_users, add_users=[rep])
    before = memberships(world, rep)
    with world.unit(OPERATOR) as uow:
        assert uow.customers.assign_sales(uow.customers.get("12345"), uow.users.get(rep)) is True
        assert uow.customers.assign_sales(uow.customers.get("12345"), uow.users.get(rep)) is False
        uow.customers.assign_sales(uow.customers.get("777"), uow.users.get(rep))
    assert memberships(world, rep) - before == {
        ("X12345-Heidelberg", f"sales:{first}"), ("RemoteUsers", f"sales:{first}"),
        ("RemoteAdministrators", f"sales:{first}"),
        ("X777-Walldorf", f"sales:{second}"), ("RemoteUsers", f"sales:{second}"),
        ("RemoteAdministrators", f"sales:{second}"),
    }
    with world.unit(OPERATOR) as uow:
        uow.customers.unassign_sales(uow.customers.get("12345"), uow.users.get(rep))
    assert memberships(world, rep) - before == {
        ("X777-Walldorf", f"sales:{second}"), ("RemoteUsers", f"sales:{second}"),
        ("RemoteAdministrators", f"sales:{second}")}
    with world.unit(OPERATOR) as uow:
        uow.customers.unassign_sales(uow.customers.get("777"), uow.users.get(rep))
    assert memberships(world, rep) == before
    with world.store.read() as session:
        actions = [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.target_id == first))]
    assert actions.count("customer.sales_assign") == 1 and actions.count("customer.sales_unassign") == 1


def test_a_sales_rep_assigned_before_remote_access_joins_the_rights_group_when_it_appears(world):
    cid = customer(world)
    rep = sales_rep(world, "sven.sales")
    with world.unit(OPERATOR) as uow:
        uow.customers.assign_sales(uow.customers.get("12345"), uow.users.get(rep))
        uow.customers.update(uow.customers.get("12345"), remote_access=True)
    assert ("X12345-Heidelberg", f"sales:{cid}") in memberships(world, rep)


def test_a_sales_rep_loses_a_customers_access_while_its_remote_access_is_off(world):
    """The assignment stays, unused: the rep's memberships for that customer go when remote
    access is turned off and come back when it is turned on again; another customer's stay."""
    cid = customer(world, remote_access=True)
    other = customer(world, "777", "Walldorf", remote_access=True)
    rep = sales_rep(world, "sven.sales")
    with world.unit(OPERATOR) as uow:
        uow.customers.assign_sales(uow.customers.get("12345"), uow.users.get(rep))
        uow.customers.assign_sales(uow.customers.get("777"), uow.users.get(rep))
    with_both = memberships(world, rep)
    assert ("X12345-Heidelberg", f"sales:{cid}") in with_both
    with world.unit(OPERATOR) as uow:
        uow.customers.update(uow.customers.get("12345"), remote_access=False)
        assert [u.user_name for u in uow.customers.sales_representatives(uow.customers.get("12345"))] == [
            "sven.sales"]  # still assigned
    off = memberships(world, rep)
    assert not {m for m in off if m[1] == f"sales:{cid}"}  # none for that customer
    assert ("X777-Walldorf", f"sales:{other}") in off and ("RemoteAdministrators", f"sales:{other}") in off
    with world.unit(OPERATOR) as uow:
        uow.customers.update(uow.customers.get("12345"), remote_access=True)
    assert memberships(world, rep) == with_both


def test_only_internal_members_of_the_sales_group_can_be_sales_reps(world):
    cid = customer(world, remote_access=True)
    outsider = user(world, "otto.nosales")
    external = user(world, "eva.extern", kind="external", customer_id=cid)
    with pytest.raises(Conflict, match="not in the group 'CustomerSalesRepresentatives'"), \
            world.unit(OPERATOR) as uow:
        uow.customers.assign_sales(uow.customers.get("12345"), uow.users.get(outsider))
    with pytest.raises(InvalidValue, match="external user"), world.unit(OPERATOR) as uow:
        uow.customers.assign_sales(uow.customers.get("12345"), uow.users.get(external))


# -- agencies ------------------------------------------------------------------------------------------


def test_agencies_and_the_default_agency_must_be_agencies(world):
    customer(world)
    customer(world, "900", "Print Agency", agency=True)
    customer(world, "901", "Not An Agency")
    with world.unit(OPERATOR) as uow:
        client = uow.customers.get("12345")
        uow.customers.update(client, default_agency="900")
        assert [a.number for a in uow.customers.set_agencies(client, ["900"])] == ["900"]
        assert [c.number for c in uow.customers.agency_for(uow.customers.get("900"))] == ["12345"]
    for number, message in [("901", "is not an agency"), ("12345", "cannot be its own agency")]:
        with pytest.raises(InvalidValue, match=message), world.unit(OPERATOR) as uow:
            uow.customers.set_agencies(uow.customers.get("12345"), [number])
    with pytest.raises(Conflict, match="is the agency of 12345"), world.unit(OPERATOR) as uow:
        uow.customers.update(uow.customers.get("900"), agency=False)


def test_customer_numbers_are_unique(world):
    customer(world)
    with pytest.raises(Conflict, match="exists already"):
        customer(world, name="Other")


def test_a_changed_rights_group_pattern_renames_the_groups_at_start(store, tmp_path):
    from sqlalchemy import select

    from bridge.config import load_config_data
    from bridge.runtime import build_runtime
    from bridge.services import Actor
    from bridge.store.models import AuditEvent, Group, GroupKind

    first = build_runtime(load_config_data({"data_dir": str(tmp_path)}), store=store)
    with first.services.unit(Actor(name="test")) as uow:
        uow.customers.create(number="8001", name="Nordic Print", remote_access=True)
        uow.customers.create(number="8002", name="Offline", remote_access=False)
    renamed = build_runtime(load_config_data({"data_dir": str(tmp_path),
                                              "customers": {"rights_group_name": "RG-{number}"}}), store=store)
    with renamed.store.read() as session:
        names = sorted(session.scalars(select(Group.display_name).where(Group.kind == GroupKind.customer_rights)))
        events = [e.changes for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "group.update"))]
    assert names == ["RG-8001"]
    assert {"display_name": ["X8001-Nordic Print", "RG-8001"]} in [
        {k: v for k, v in e.items() if k == "display_name"} for e in events]
    again = build_runtime(load_config_data({"data_dir": str(tmp_path),
                                            "customers": {"rights_group_name": "RG-{number}"}}), store=store)
    with again.store.read() as session:  # nothing to do the second time
        assert len(list(session.scalars(select(AuditEvent).where(AuditEvent.action == "group.update")))) == len(events)


def test_a_sales_rep_who_leaves_the_sales_group_keeps_no_customer_access(world):
    """The directory (or anyone) takes the rep out of CustomerSalesRepresentatives: the
    assignments stop counting at once, and count again when the rep is put back."""
    cid = customer(world, remote_access=True)
    rep = sales_rep(world, "sven.sales")
    with world.unit(OPERATOR) as uow:
        uow.customers.assign_sales(uow.customers.get("12345"), uow.users.get(rep))
    assigned = memberships(world, rep)
    assert ("RemoteAdministrators", f"sales:{cid}") in assigned
    with world.unit(OPERATOR) as uow:
        sales = uow.session.scalar(select(Group).where(Group.display_name == "CustomerSalesRepresentatives"))
        uow.groups.change_members(sales, remove_users=[rep])
    assert not {m for m in memberships(world, rep) if m[1] == f"sales:{cid}"}
    with world.unit(OPERATOR) as uow:
        sales = uow.session.scalar(select(Group).where(Group.display_name == "CustomerSalesRepresentatives"))
        uow.groups.change_members(sales, add_users=[rep])
    assert memberships(world, rep) == assigned


def test_a_rights_group_name_the_new_pattern_cannot_give_does_not_stop_the_start(store, tmp_path):
    from sqlalchemy import select

    from bridge.config import load_config_data
    from bridge.runtime import build_runtime
    from bridge.services import Actor
    from bridge.store.models import Group, GroupKind

    first = build_runtime(load_config_data({"data_dir": str(tmp_path)}), store=store)
    with first.services.unit(Actor(name="test")) as uow:
        uow.customers.create(number="9001", name="RemoteUsers", remote_access=True)  # clashes under {name}
        uow.customers.create(number="9002", name="Fine", remote_access=True)
    second = build_runtime(load_config_data({"data_dir": str(tmp_path), "customers": {"rights_group_name": "{name}"}}),
                           store=store)
    with second.store.read() as session:
        names = sorted(session.scalars(select(Group.display_name).where(Group.kind == GroupKind.customer_rights)))
    assert names == ["Fine", "X9001-RemoteUsers"]  # the one that cannot be renamed keeps its name


def test_the_sales_group_deleted_ends_the_reps_customer_access(world):
    cid = customer(world, remote_access=True)
    rep = sales_rep(world, "sven.sales")
    with world.unit(OPERATOR) as uow:
        uow.customers.assign_sales(uow.customers.get("12345"), uow.users.get(rep))
    assert ("RemoteAdministrators", f"sales:{cid}") in memberships(world, rep)
    with world.unit(OPERATOR) as uow:
        sales = uow.session.scalar(select(Group).where(Group.display_name == "CustomerSalesRepresentatives"))
        uow.groups.delete(sales)
    assert not {m for m in memberships(world, rep) if m[1] == f"sales:{cid}"}
