"""The ``active_directory`` preset against a real AD DC: Samba's (tests/fixtures/samba_ad.py).

objectGUID as the stable id, the userAccountControl disabled bit, sAMAccountName and
userPrincipalName, nested groups, ranged ``member`` retrieval of a group of more than
1,500, uSNChanged marks, renames and moves, deletions (full scans, and DirSync in
incremental ones), the bind check, user logins by bind and write-back.
"""

from __future__ import annotations

import ldap3

from bridge.config import LdapSourceConfig
from bridge.ldap.auth import verify_password
from bridge.ldap.connection import check_bind, connect
from bridge.ldap.directory import Reader
from bridge.ldap.dirsync import COOKIE_KEY
from bridge.ldap.dn import dn_key
from bridge.ldap.presets import attribute_map
from bridge.ldap.sync import run_sync
from bridge.store.models import SyncRun
from tests.fixtures.app import make_config
from tests.fixtures.samba_ad import BIG_GROUP_DN, BULK_USERS, AdTree, SambaAD, ad_source
from tests.integration.test_ldap_sync import groups_by_name, members, runtime_for, users_by_name

PASSWORD = "Pw-Secret-123x"


def source_of(settings: dict) -> LdapSourceConfig:
    return make_config(ldap={"sources": [settings]}).ldap.sources[0]


def seed(tree: AdTree) -> dict[str, str]:
    """alice and bob in devs, carol disabled, eng = devs + carol (nested)."""
    dns = {
        "alice": tree.add_user("alice", password=PASSWORD, displayName="Alice Anders", department="ENG",
                               employeeID="E-1"),
        "bob": tree.add_user("bob"),
        "carol": tree.add_user("carol", disabled=True),
    }
    dns["devs"] = tree.add_group("devs", [dns["alice"], dns["bob"]])
    dns["eng"] = tree.add_group("eng", [dns["devs"], dns["carol"]])
    return dns


def test_samba_speaks_the_ad_protocol_the_preset_relies_on(samba_ad: SambaAD):
    """DirSync is offered, and ``member`` comes in ranges when asked for (Samba, unlike
    Windows, answers a plain ``member`` with every value: see docs/ldap.md)."""
    conn = samba_ad.connect()
    conn.search("", "(objectClass=*)", ldap3.BASE, attributes=["supportedControl", "defaultNamingContext"])
    root = conn.response[0]["attributes"]
    assert "1.2.840.113556.1.4.841" in root["supportedControl"]  # DirSync
    conn.search(BIG_GROUP_DN, "(objectClass=*)", ldap3.BASE, attributes=["member;range=0-1499"])
    assert {k: len(v) for k, v in conn.response[0]["raw_attributes"].items() if v} == {"member;range=0-1499": 1500}
    conn.search(BIG_GROUP_DN, "(objectClass=*)", ldap3.BASE, attributes=["member;range=1500-*"])
    assert {k: len(v) for k, v in conn.response[0]["raw_attributes"].items() if v} == {
        "member;range=1500-*": BULK_USERS - 1500}
    conn.unbind()


def test_first_full_sync(sqlite_store, samba_ad, ad_tree):
    dns = seed(ad_tree)
    rt = runtime_for(sqlite_store, **ad_source(samba_ad, ad_tree))
    result = run_sync(rt, "corp")
    assert result.status == "ok", result.error
    assert (result.mode, result.counts.added, result.counts.errors, result.counts.groups_added) == ("full", 3, 0, 2)
    assert result.high_water_mark and result.high_water_mark.startswith("usn:")

    users = users_by_name(sqlite_store)
    assert set(users) == {"alice", "bob", "carol"}  # sAMAccountName
    alice = users["alice"]
    assert alice.source_id == ad_tree.object_guid(dns["alice"])  # objectGUID, as a UUID
    assert (alice.display_name, alice.given_name, alice.family_name, alice.email) == (
        "Alice Anders", "Alice", "Tester", "alice@example.org")
    assert alice.attributes["userPrincipalName"] == "alice@dirbridge.test"
    assert alice.attributes["department"] == "ENG" and alice.attributes["employeeID"] == "E-1"
    assert dn_key(alice.ldap_dn) == dn_key(dns["alice"])
    assert alice.active and users["bob"].active
    assert not users["carol"].active  # userAccountControl 514: ACCOUNTDISABLE

    groups = groups_by_name(sqlite_store)
    assert groups["devs"].source_id == ad_tree.object_guid(dns["devs"])
    assert members(sqlite_store, groups["devs"]) == {"alice", "bob"}
    assert members(sqlite_store, groups["eng"]) == {"devs", "carol"}  # nested

    # userPrincipalName as the user name instead, by the attribute map.
    rt = runtime_for(sqlite_store, **ad_source(samba_ad, ad_tree, attributes={"user_name": "userPrincipalName"}))
    again = run_sync(rt, "corp", full=True)
    assert again.status == "ok" and again.counts.updated == 3
    assert set(users_by_name(sqlite_store)) == {"alice@dirbridge.test", "bob@dirbridge.test", "carol@dirbridge.test"}


def test_a_group_of_more_than_1500_comes_whole_through_ranges(sqlite_store, samba_ad):
    source = source_of(ad_source(samba_ad))
    amap = attribute_map(source)
    assert "member;range=0-1499" in amap.group_attributes()
    # The reader itself, on a real connection: it asks for the second range.
    conn = connect(source)
    asked: list[list[str]] = []
    search = conn.search

    def recording(base, search_filter, scope=ldap3.SUBTREE, *args, **kwargs):
        if scope == ldap3.BASE:
            asked.append(list(kwargs.get("attributes") or []))
        return search(base, search_filter, scope, *args, **kwargs)

    conn.search = recording  # type: ignore[method-assign]
    (big,) = [g for g in Reader(conn, source, amap).groups() if g.name == "big"]
    conn.unbind()
    assert asked == [["member;range=1500-*"]]
    assert len(big.member_dns) == len(set(big.member_dns)) == BULK_USERS

    # The whole sync (the full scan reads in a child process).
    rt = runtime_for(sqlite_store, **ad_source(samba_ad))
    result = run_sync(rt, "corp")
    assert result.status == "ok", result.error
    assert result.counts.added == BULK_USERS
    assert len(members(sqlite_store, groups_by_name(sqlite_store)["big"])) == BULK_USERS


def test_rename_and_move_keep_the_user_and_incremental_reads_by_usn(sqlite_store, samba_ad, ad_tree):
    dns = seed(ad_tree)
    ad_tree.conn.add(f"OU=moved,{ad_tree.users_base}", ["organizationalUnit"])
    rt = runtime_for(sqlite_store, **ad_source(samba_ad, ad_tree))
    first = run_sync(rt, "corp")
    before = users_by_name(sqlite_store)
    mark = int(first.high_water_mark.split(":")[1].split("@")[0])

    ad_tree.conn.modify_dn(dns["bob"], "CN=Robert")  # modrdn: a new CN, same object
    ad_tree.modify(f"CN=Robert,{ad_tree.users_base}", sAMAccountName="robert")
    ad_tree.conn.modify_dn(dns["alice"], "CN=alice", new_superior=f"OU=moved,{ad_tree.users_base}")
    ad_tree.modify(dns["carol"], userAccountControl="512")  # enabled again (has no password: 512 on a 514 works)
    dave = ad_tree.add_user("dave")

    result = run_sync(rt, "corp")
    assert result.status == "ok", result.error
    assert result.mode == "incremental"
    assert (result.counts.added, result.counts.updated) == (1, 3)
    assert result.counts.scanned < 10  # only what changed since the mark (and the mark's own entry)
    after = users_by_name(sqlite_store)
    assert after["robert"].id == before["bob"].id
    assert after["alice"].id == before["alice"].id and "OU=moved" in after["alice"].ldap_dn
    assert after["carol"].active
    assert after["dave"].source_id == ad_tree.object_guid(dave)
    assert int(result.high_water_mark.split(":")[1].split("@")[0]) > mark
    # The group follows the rename by DN: AD rewrote its member value.
    assert members(sqlite_store, groups_by_name(sqlite_store)["devs"]) == {"alice", "robert"}

    # Nothing changed since: the boundary entry is read again (>= the mark) as unchanged.
    quiet = run_sync(rt, "corp")
    assert quiet.mode == "incremental" and (quiet.counts.added, quiet.counts.updated) == (0, 0)
    assert quiet.counts.scanned <= 2


def test_deletions_without_dirsync_wait_for_a_full_sync(sqlite_store, samba_ad, ad_tree):
    dns = seed(ad_tree)
    rt = runtime_for(sqlite_store, **ad_source(samba_ad, ad_tree))
    run_sync(rt, "corp")
    ad_tree.conn.delete(dns["bob"])
    incremental = run_sync(rt, "corp")
    assert incremental.mode == "incremental" and incremental.counts.deactivated == 0
    full = run_sync(rt, "corp", full=True)
    assert full.status == "ok" and full.counts.deactivated == 1
    assert not users_by_name(sqlite_store)["bob"].active


def test_dirsync_applies_deletions_in_an_incremental_sync(sqlite_store, samba_ad, ad_tree):
    dns = seed(ad_tree)
    rt = runtime_for(sqlite_store, **ad_source(samba_ad, ad_tree, dirsync=True))
    first = run_sync(rt, "corp")
    assert first.status == "ok" and first.mode == "full"
    with sqlite_store.read() as session:
        assert session.get(SyncRun, first.run_id).detail[COOKIE_KEY]

    ad_tree.conn.delete(dns["bob"])
    ad_tree.conn.delete(dns["eng"])
    result = run_sync(rt, "corp")
    assert result.status == "ok", result.error
    assert result.mode == "incremental"  # no full scan
    assert (result.counts.deactivated, result.counts.groups_removed) == (1, 1)
    assert result.counts.scanned <= 2  # the changed group, at most the mark's own entry
    users = users_by_name(sqlite_store)
    assert not users["bob"].active and users["alice"].active and not users["carol"].active
    assert set(groups_by_name(sqlite_store)) == {"devs"}
    assert members(sqlite_store, groups_by_name(sqlite_store)["devs"]) == {"alice"}

    # The cookie moved on: the same deletion is not reported again.
    again = run_sync(rt, "corp")
    assert again.mode == "incremental" and (again.counts.deactivated, again.counts.groups_removed) == (0, 0)


def test_dirsync_deletions_go_through_the_deletion_guard(sqlite_store, samba_ad, ad_tree):
    dns = [ad_tree.add_user(f"g{i}") for i in range(5)]
    settings = ad_source(samba_ad, ad_tree, dirsync=True,
                         deletion_guard={"max_percent": 100, "max_count": 1, "min_entries": 0})
    rt = runtime_for(sqlite_store, **settings)
    run_sync(rt, "corp")
    ad_tree.conn.delete(dns[0])
    ad_tree.conn.delete(dns[1])
    guarded = run_sync(rt, "corp")
    assert guarded.mode == "incremental" and guarded.status == "guarded" and "max_count" in guarded.guard
    assert all(u.active for u in users_by_name(sqlite_store).values())
    approved = run_sync(rt, "corp", approve_deletions=True)
    assert approved.status == "approved" and approved.counts.deactivated == 2
    assert sorted(n for n, u in users_by_name(sqlite_store).items() if not u.active) == ["g0", "g1"]


def test_dirsync_turned_on_later_starts_with_a_full_sync(sqlite_store, samba_ad, ad_tree):
    seed(ad_tree)
    run_sync(runtime_for(sqlite_store, **ad_source(samba_ad, ad_tree)), "corp")
    rt = runtime_for(sqlite_store, **ad_source(samba_ad, ad_tree, dirsync=True))
    assert run_sync(rt, "corp").mode == "full"  # no cookie yet
    assert run_sync(rt, "corp").mode == "incremental"


def test_check_config_bind_and_user_login(samba_ad, ad_tree):
    dns = seed(ad_tree)
    source = source_of(ad_source(samba_ad, ad_tree))
    ok, message = check_bind(source)
    assert ok, message
    assert not check_bind(source_of(ad_source(samba_ad, ad_tree, bind_password="wrong")))[0]
    # Verification on: a certificate of another CA is refused.
    other = source_of(ad_source(samba_ad, ad_tree, tls={"mode": "ldaps", "ca_file": str(samba_ad.other_ca_file)}))
    ok, message = check_bind(other)
    assert not ok and "certificate" in message.lower()

    assert verify_password(source, dns["alice"], PASSWORD) is True
    assert verify_password(source, dns["alice"], "wrong-password") is False
    assert verify_password(source, dns["alice"], "") is False
    ad_tree.modify(dns["alice"], userAccountControl="514")
    assert verify_password(source, dns["alice"], PASSWORD) is False  # disabled: the DC refuses the bind


def test_writeback_creates_disables_renames_and_removes_ad_users(sqlite_store, samba_ad, ad_tree):
    from bridge.ldap.writeback import (
        group_dn,
        user_dn,
        writeback_group,
        writeback_group_members,
        writeback_user,
        writeback_user_removed,
    )
    from bridge.services import Actor

    conn = ad_tree.conn
    wb_users, wb_groups = f"OU=wb-users,{ad_tree.base}", f"OU=wb-groups,{ad_tree.base}"
    conn.add(wb_users, ["organizationalUnit"])
    conn.add(wb_groups, ["organizationalUnit"])
    rt = runtime_for(sqlite_store, **ad_source(samba_ad, ad_tree, users_base=ad_tree.base, groups_base=ad_tree.base,
                                               writeback={"enabled": True, "users_base": wb_users,
                                                          "groups_base": wb_groups}))
    source = rt.config.ldap.sources[0]

    def read(dn: str) -> dict | None:
        try:
            conn.search(dn, "(objectClass=*)", ldap3.BASE,
                        attributes=["sAMAccountName", "userAccountControl", "mail", "member", "objectClass"])
        except ldap3.core.exceptions.LDAPNoSuchObjectResult:
            return None
        return conn.response[0]["attributes"]

    with rt.services.unit(Actor.scim_client("entra")) as uow:
        user = uow.users.create(user_name="lena.lang", display_name="Lena Lang", given_name="Lena",
                                family_name="Lang", email="lena@example.org")
    writeback_user(rt, user)
    entry = read(user_dn(source, "lena.lang"))
    assert entry is not None and entry["sAMAccountName"] == ["lena.lang"] and entry["mail"] == ["lena@example.org"]
    assert int(entry["userAccountControl"][0]) & 0x2 == 0  # an enabled account
    assert "user" in entry["objectClass"]

    with rt.services.unit(Actor.scim_client("entra")) as uow:
        group = uow.groups.create(display_name="wb-team")
    writeback_group(rt, group)
    writeback_group_members(rt, group, added_user_ids=[user.id])
    assert dn_key(read(group_dn(source, "wb-team"))["member"][0]) == dn_key(user_dn(source, "lena.lang"))

    with rt.services.unit(Actor.scim_client("entra")) as uow:
        user = uow.users.deactivate(uow.users.get(user.id))
    writeback_user(rt, user)
    assert int(read(user_dn(source, "lena.lang"))["userAccountControl"][0]) & 0x2  # disabled

    with rt.services.unit(Actor.scim_client("entra")) as uow:
        user = uow.users.update(uow.users.get(user.id), user_name="lena.berg")
    writeback_user(rt, user)
    assert read(user_dn(source, "lena.lang")) is None
    assert read(user_dn(source, "lena.berg"))["sAMAccountName"] == ["lena.berg"]

    # The write-back subtree is skipped by the sync.
    result = run_sync(rt, "corp")
    assert result.status == "ok" and "lena.berg" not in users_by_name(sqlite_store)

    writeback_user_removed(rt, user)
    assert read(user_dn(source, "lena.berg")) is None
