"""Write-back of SCIM-provisioned users and groups into an LDAP subtree, and the
mapping rules acting on what a sync stored."""

from __future__ import annotations

import ldap3
import pytest

from bridge.ldap.dn import dn_key
from bridge.ldap.sync import run_sync
from bridge.ldap.writeback import (
    group_dn,
    user_dn,
    writeback_group,
    writeback_group_members,
    writeback_group_removed,
    writeback_user,
    writeback_user_removed,
)
from bridge.services import Actor
from tests.fixtures.slapd import source_settings, writeback_subtree
from tests.integration.test_ldap_sync import runtime_for, users_by_name


@pytest.fixture
def wb(sqlite_store, ldap_tree):
    tree = ldap_tree
    users_base, groups_base = writeback_subtree(tree)
    rt = runtime_for(sqlite_store, **source_settings(
        tree.server, tree, users_base=tree.base, groups_base=tree.base,
        writeback={"enabled": True, "users_base": users_base, "groups_base": groups_base}))
    return rt, tree, rt.config.ldap.sources[0]


def read(tree, dn: str, *attributes: str) -> dict | None:
    try:
        tree.conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=list(attributes) or ["*"])
    except ldap3.core.exceptions.LDAPNoSuchObjectResult:
        return None
    return tree.conn.response[0]["attributes"]


def test_scim_users_are_written_renamed_disabled_and_removed(wb):
    rt, tree, source = wb
    with rt.services.unit(Actor.scim_client("entra")) as uow:
        user = uow.users.create(user_name="Lena.Lang", display_name="Lena Lang", given_name="Lena",
                                family_name="Lang", email="lena@example.org")
    writeback_user(rt, user)
    entry = read(tree, user_dn(source, "Lena.Lang"))
    assert entry["uid"] == ["Lena.Lang"] and entry["mail"] == ["lena@example.org"] and entry["sn"] == ["Lang"]

    with rt.services.unit(Actor.scim_client("entra")) as uow:
        user = uow.users.update(uow.users.get(user.id), user_name="Lena.Berg", family_name="Berg",
                                email="lena.berg@example.org")
    writeback_user(rt, user)
    assert read(tree, user_dn(source, "Lena.Lang")) is None
    entry = read(tree, user_dn(source, "Lena.Berg"))
    assert entry["uid"] == ["Lena.Berg"] and entry["sn"] == ["Berg"] and entry["mail"] == ["lena.berg@example.org"]

    with rt.services.unit(Actor.scim_client("entra")) as uow:
        user = uow.users.deactivate(uow.users.get(user.id))
    writeback_user(rt, user)  # OpenLDAP has no disabled flag: the entry goes
    assert read(tree, user_dn(source, "Lena.Berg")) is None
    with rt.services.unit(Actor.scim_client("entra")) as uow:
        user = uow.users.update(uow.users.get(user.id), active=True)
    writeback_user(rt, user)
    assert read(tree, user_dn(source, "Lena.Berg")) is not None
    writeback_user_removed(rt, user)
    assert read(tree, user_dn(source, "Lena.Berg")) is None


def test_group_members_are_single_value_adds_and_deletes(wb):
    rt, tree, source = wb
    with rt.services.unit(Actor.scim_client("entra")) as uow:
        a = uow.users.create(user_name="wb.anna", email="anna@example.org")
        b = uow.users.create(user_name="wb.bernd, jr.", email="bernd@example.org")  # a comma in the RDN
        group = uow.groups.create("Fleet, Nord")
        uow.groups.change_members(group, add_users=[a.id])
    for user in (a, b):
        writeback_user(rt, user)
    writeback_group(rt, group)
    dn = group_dn(source, "Fleet, Nord")
    assert [dn_key(m) for m in read(tree, dn, "member")["member"]] == [dn_key(user_dn(source, "wb.anna"))]

    # A member that someone else added in LDAP stays: the write-back never replaces the attribute.
    foreign = f"uid=someone-else,{tree.users_base}"
    tree.conn.modify(dn, {"member": [(ldap3.MODIFY_ADD, [foreign])]})
    with rt.services.unit(Actor.scim_client("entra")) as uow:
        uow.groups.change_members(uow.groups.get(group.id), add_users=[b.id], remove_users=[a.id])
    writeback_group_members(rt, group, added_user_ids=[b.id], removed_user_ids=[a.id])
    assert {dn_key(m) for m in read(tree, dn, "member")["member"]} == {
        dn_key(user_dn(source, "wb.bernd, jr.")), dn_key(foreign)}

    # Removing the last members keeps a valid (empty) groupOfNames; adding again works.
    tree.conn.modify(dn, {"member": [(ldap3.MODIFY_DELETE, [foreign])]})
    writeback_group_members(rt, group, removed_user_ids=[b.id])
    assert read(tree, dn, "member")["member"] == [""]
    writeback_group_members(rt, group, added_user_ids=[a.id, b.id])
    assert len(read(tree, dn, "member")["member"]) == 2

    with rt.services.unit(Actor.scim_client("entra")) as uow:
        renamed = uow.groups.update(uow.groups.get(group.id), display_name="Fleet Süd")
    writeback_group(rt, renamed)
    assert read(tree, dn) is None and len(read(tree, group_dn(source, "Fleet Süd"), "member")["member"]) == 2
    writeback_group_removed(rt, renamed)
    assert read(tree, group_dn(source, "Fleet Süd")) is None


def test_written_back_entries_do_not_come_back_as_directory_users(wb):
    rt, tree, source = wb
    tree.add_user("native")
    with rt.services.unit(Actor.scim_client("entra")) as uow:
        scim_user = uow.users.create(user_name="from.scim", email="s@example.org")
    writeback_user(rt, scim_user)
    result = run_sync(rt, "corp")
    assert result.status == "ok" and result.counts.errors == 0
    assert set(users_by_name(rt.store)) == {"native"}


def test_only_scim_resources_are_written(wb):
    rt, tree, source = wb
    with rt.services.unit(Actor(name="cli:test")) as uow:
        local = uow.users.create(user_name="local.user", email="l@example.org")
    writeback_user(rt, local)
    assert read(tree, user_dn(source, "local.user")) is None


def test_mapping_rules_act_on_synced_groups_and_attributes(sqlite_store, ldap_tree):
    """The sync stores groups (cn, DN), memberships and the attributes rules read; the
    mapping engine turns them into grants and customers."""
    from bridge.mapping.apply import apply_config
    from bridge.mapping.engine import authorizer
    from bridge.runtime import build_runtime
    from tests.fixtures.app import make_config

    tree = ldap_tree
    mgr = tree.add_user("poolmgr")
    tree.add_user("agent", departmentNumber="Customer Service", employeeNumber="4711")
    tree.add_group("pool-north-1-managers", [mgr])
    config = make_config(
        ldap={"sources": [source_settings(tree.server, tree)]},
        scopes={"nodes": [{"id": "company_group:north"}, {"id": "pool:north-1", "parent": "company_group:north"}]},
        roles=[{"name": "fleet_manager", "rights": ["users.manage"]}],
        mapping={"rules": [
            {"source": "ldap:corp", "group_regex": r"^cn=pool-(?P<pool>[^,]+)-managers,", "role": "fleet_manager",
             "scope": "pool:{pool}"},
            {"source": "ldap:corp", "attribute": "department", "value": "Customer Service",
             "customer": "{employeeNumber}", "kind": "external"},
        ]},
    )
    rt = build_runtime(config, store=sqlite_store)
    apply_config(rt.services, config)
    with rt.services.unit(Actor(name="cli:test")) as uow:
        uow.customers.create("4711", "Heidelberg", remote_access=True)

    result = run_sync(rt, "corp")
    assert result.status == "ok" and result.errors == []
    check = authorizer(rt).check
    assert check("poolmgr", "users.manage", "pool:north-1").allowed
    assert not check("poolmgr", "users.manage", "company_group:north").allowed
    assert not check("agent", "users.manage", "pool:north-1").allowed
    agent = users_by_name(sqlite_store)["agent"]
    assert agent.kind.value == "external" and agent.customer_id is not None

    # Leaving the LDAP group takes the right away at the next sync.
    tree.conn.modify(f"cn=pool-north-1-managers,{tree.groups_base}", {"member": [(ldap3.MODIFY_REPLACE, [""])]})
    run_sync(rt, "corp", full=True)
    assert not authorizer(rt).check("poolmgr", "users.manage", "pool:north-1").allowed
