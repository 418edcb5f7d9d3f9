"""Write-back owns only what it created (issue "Trust boundaries between sources"), against
the real servers: OpenLDAP's slapd and 389-DS. An entry another source or an administrator
made is never modified, filled, renamed over or deleted; the name is matched the way the
directory matches it; each refusal is a conflict naming both sides."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bridge.ldap.dn import dn_key
from bridge.ldap.writeback import (
    WritebackFailed,
    group_dn,
    user_dn,
    writeback_group,
    writeback_group_members,
    writeback_group_removed,
    writeback_user,
    writeback_user_removed,
)
from bridge.services import Actor
from bridge.store.models import SourceConflict, WritebackEntry
from tests.fixtures.slapd import source_settings, writeback_subtree
from tests.integration.test_ldap_sync import runtime_for
from tests.integration.test_ldap_writeback import read

IDP1, IDP2 = Actor.scim_client("idp1"), Actor.scim_client("idp2")


@pytest.fixture(params=["openldap", "389ds"])
def wb(request, sqlite_store):
    tree = request.getfixturevalue("ldap_tree" if request.param == "openldap" else "ds389_tree")
    users_base, groups_base = writeback_subtree(tree)
    rt = runtime_for(sqlite_store, **source_settings(
        tree.server, tree, preset=request.param, users_base=tree.base, groups_base=tree.base,
        writeback={"enabled": True, "users_base": users_base, "groups_base": groups_base}))
    return rt, tree, rt.config.ldap.sources[0]


def foreign_user(tree, source, name: str, mail: str) -> str:
    """An entry in the write-back subtree that write-back did not create (an administrator's,
    or one a former write-back of another instance left)."""
    dn = user_dn(source, name)
    tree.conn.add(dn, ["inetOrgPerson"], {"uid": name, "cn": name, "sn": "Foreign", "mail": mail})
    return dn


def open_conflicts(rt) -> list[SourceConflict]:
    with rt.store.read() as session:
        return list(session.scalars(select(SourceConflict).where(SourceConflict.resolved_at.is_(None))))


def create_user(rt, actor: Actor, name: str, **fields):
    with rt.services.unit(actor) as uow:
        return uow.users.create(user_name=name, email=fields.pop("email", f"x{abs(hash(name))}@example.org"),
                                **fields)


@pytest.mark.parametrize("name", ["victim.wb", "VICTIM.WB", "ｖictim.wb", "victim.wb "])
def test_an_entry_it_did_not_create_is_not_overwritten_whatever_the_spelling(wb, name):
    rt, tree, source = wb
    dn = foreign_user(tree, source, "victim.wb", "victim@example.org")
    user = create_user(rt, IDP2, name, email="attacker@example.org", family_name="Attacker")
    try:
        writeback_user(rt, user)
    except WritebackFailed as exc:  # 389-DS's 7-bit check refuses the fullwidth uid outright
        assert source.preset == "389ds" and not name.isascii() and "7-bit" in str(exc)
        refused_by_directory = True
    else:
        refused_by_directory = False
    entry = read(tree, dn, "mail", "sn")
    assert entry["mail"] == ["victim@example.org"] and entry["sn"] == ["Foreign"]
    if not refused_by_directory:
        [conflict] = open_conflicts(rt)
        assert conflict.kind == "writeback" and conflict.source == "scim:idp2"
        assert dn_key(dn) in dn_key(conflict.holder) and "corp" in conflict.holder

    # Deleting its own user deletes nothing in the directory.
    with rt.services.unit(IDP2) as uow:
        uow.users.delete(uow.users.get(user.id))
    writeback_user_removed(rt, user)
    assert read(tree, dn, "mail")["mail"] == ["victim@example.org"]


def test_a_name_the_directory_matches_with_other_spaces_is_taken(wb):
    """``john  doe`` and ``uid=john doe``: the directory's equality rule collapses the spaces."""
    rt, tree, source = wb
    dn = foreign_user(tree, source, "john doe", "john@example.org")
    user = create_user(rt, IDP2, "john  doe")
    writeback_user(rt, user)
    assert read(tree, dn, "mail")["mail"] == ["john@example.org"]
    assert [c.subject for c in open_conflicts(rt)] == ["john  doe"]


def test_a_group_it_did_not_create_gets_no_members(wb):
    rt, tree, source = wb
    victim = foreign_user(tree, source, "outsider", "outsider@example.org")
    dn = group_dn(source, "Legacy Admins")
    tree.conn.add(dn, ["groupOfNames"], {"cn": "Legacy Admins", "member": [victim]})
    mallory = create_user(rt, IDP2, "mallory.wb")
    writeback_user(rt, mallory)
    with rt.services.unit(IDP2) as uow:
        group = uow.groups.create("legacy admins")
        uow.groups.change_members(group, add_users=[mallory.id])
    writeback_group(rt, group)
    writeback_group_members(rt, group, added_user_ids=[mallory.id])
    assert [dn_key(m) for m in read(tree, dn, "member")["member"]] == [dn_key(victim)]
    with rt.services.unit(IDP2) as uow:
        uow.groups.delete(uow.groups.get(group.id))
    writeback_group_removed(rt, group)
    assert read(tree, dn) is not None
    assert {(c.kind, c.subject) for c in open_conflicts(rt)} == {("writeback", "legacy admins")}


def test_its_own_entry_is_found_by_its_stable_id_not_its_name(wb):
    """An entry write-back made, deleted by an administrator who puts another entry at
    the same DN: that one is not ours, so it is neither changed nor deleted."""
    rt, tree, source = wb
    user = create_user(rt, IDP1, "carol.wb", family_name="Carol")
    writeback_user(rt, user)
    dn = user_dn(source, "carol.wb")
    assert read(tree, dn, "sn")["sn"] == ["Carol"]
    with rt.store.read() as session:
        [recorded] = session.scalars(select(WritebackEntry))
    assert recorded.kind == "user" and recorded.resource_id == user.id and recorded.entry_id

    tree.conn.delete(dn)
    foreign_user(tree, source, "carol.wb", "someone@example.org")
    with rt.services.unit(IDP1) as uow:
        user = uow.users.update(uow.users.get(user.id), family_name="Changed")
    writeback_user(rt, user)
    assert dict(read(tree, dn, "sn", "mail")) == {"sn": ["Foreign"], "mail": ["someone@example.org"]}
    assert [c.subject for c in open_conflicts(rt)] == ["carol.wb"]
    writeback_user_removed(rt, user)
    assert read(tree, dn) is not None

    # The administrator removes the impostor: the next change writes the user anew and the
    # conflict is over.
    tree.conn.delete(dn)
    writeback_user(rt, user)
    assert read(tree, dn, "sn")["sn"] == ["Changed"]
    assert open_conflicts(rt) == []


def test_a_moved_entry_is_followed_and_a_rename_never_lands_on_another(wb):
    rt, tree, source = wb
    user = create_user(rt, IDP1, "dora.wb", family_name="Dora")
    writeback_user(rt, user)
    parent = source.writeback.users_base
    tree.conn.add(f"ou=moved,{parent}", ["organizationalUnit"], {"ou": "moved"})
    tree.conn.modify_dn(user_dn(source, "dora.wb"), "uid=dora.wb", new_superior=f"ou=moved,{parent}")
    with rt.services.unit(IDP1) as uow:
        user = uow.users.update(uow.users.get(user.id), family_name="Moved")
    writeback_user(rt, user)
    assert read(tree, f"uid=dora.wb,ou=moved,{parent}", "sn")["sn"] == ["Moved"]

    taken = foreign_user(tree, source, "eve.wb", "eve@example.org")
    with rt.services.unit(IDP1) as uow:
        user = uow.users.update(uow.users.get(user.id), user_name="EVE.wb")
    writeback_user(rt, user)
    assert dict(read(tree, taken, "mail", "sn")) == {"mail": ["eve@example.org"], "sn": ["Foreign"]}
    assert read(tree, f"uid=dora.wb,ou=moved,{parent}") is not None
    assert [c.subject for c in open_conflicts(rt)] == ["EVE.wb"]


def test_a_member_whose_entry_is_not_ours_is_not_written_into_a_group(wb):
    rt, tree, source = wb
    foreign = foreign_user(tree, source, "frank.wb", "frank@example.org")
    frank = create_user(rt, IDP2, "frank.wb")
    gina = create_user(rt, IDP2, "gina.wb")
    for user in (frank, gina):
        writeback_user(rt, user)
    with rt.services.unit(IDP2) as uow:
        group = uow.groups.create("Finance WB")
        uow.groups.change_members(group, add_users=[frank.id, gina.id])
    writeback_group(rt, group)
    members = {dn_key(m) for m in read(tree, group_dn(source, "Finance WB"), "member")["member"]}
    assert members == {dn_key(user_dn(source, "gina.wb"))} and dn_key(foreign) not in members


def test_a_member_entry_replaced_by_someone_else_is_not_written_into_a_group(wb):
    """The recorded DN of a member now holds another entry (an administrator deleted ours
    and made their own there): the group gets no member rather than that entry."""
    rt, tree, source = wb
    carol = create_user(rt, IDP1, "carol2.wb")
    writeback_user(rt, carol)
    dn = user_dn(source, "carol2.wb")
    tree.conn.delete(dn)
    foreign_user(tree, source, "carol2.wb", "admin@example.org")
    with rt.services.unit(IDP1) as uow:
        group = uow.groups.create("Team WB")
    writeback_group(rt, group)
    with rt.services.unit(IDP1) as uow:
        uow.groups.change_members(uow.groups.get(group.id), add_users=[carol.id])
    writeback_group_members(rt, group, added_user_ids=[carol.id])
    members = read(tree, group_dn(source, "Team WB"), "member")["member"]
    assert dn_key(dn) not in {dn_key(m) for m in members if m}


def test_an_entry_left_behind_for_a_removed_user_is_a_conflict(wb):
    """An entry of a deleted user's name that write-back has no record of (written by a
    version before the records, say) stays, and the operator is told."""
    rt, tree, source = wb
    old = foreign_user(tree, source, "leaver.wb", "leaver@example.org")
    user = create_user(rt, IDP1, "leaver.wb")
    with rt.services.unit(IDP1) as uow:
        uow.users.delete(uow.users.get(user.id))
    writeback_user_removed(rt, user)
    assert read(tree, old) is not None
    [conflict] = open_conflicts(rt)
    assert conflict.subject == "leaver.wb" and "delete it by hand" in conflict.detail
    tree.conn.delete(old)
    writeback_user_removed(rt, user)  # nothing left of that name: the conflict is over
    assert open_conflicts(rt) == []


def test_a_name_with_an_invisible_character_meets_the_plain_one_in_the_directory(wb):
    """slapd keeps a zero-width space in a uid, so ``victim\\u200b.wb`` and ``victim.wb``
    are two names to it; write-back also asks for the cleaned name, so it does not put a
    look-alike beside an entry it did not create."""
    rt, tree, source = wb
    dn = foreign_user(tree, source, "victim.wb", "victim@example.org")
    user = create_user(rt, IDP2, "victim\u200b.wb")
    try:
        writeback_user(rt, user)
    except WritebackFailed:
        assert source.preset == "389ds"  # its 7-bit check refuses the value outright
    tree.conn.search(source.writeback.users_base, "(objectClass=inetOrgPerson)", attributes=["uid"])
    assert [dn_key(e["dn"]) for e in tree.conn.response if e["type"] == "searchResEntry"] == [dn_key(dn)]
