"""The ``389ds`` and ``freeipa`` presets and write-back against a real 389 Directory Server
(tests/fixtures/ds389.py), through the same code paths as the slapd tests: ``run_sync``,
``verify_password`` and the write-back functions (and SCIM over HTTP)."""

from __future__ import annotations

import re
import time
import uuid

import ldap3
import pytest

from bridge.config import Config, load_config_data
from bridge.ldap.auth import verify_password
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
from bridge.store.models import SyncRun
from tests.fixtures.app import create_token
from tests.fixtures.ds389 import SEED_GROUPS, SEED_LOCKED, SEED_PASSWORDS
from tests.fixtures.slapd import source_settings, writeback_subtree
from tests.integration.test_ldap_sync import groups_by_name, members, runtime_for, users_by_name
from tests.integration.test_scim_http import CORE, Scim

GENERALIZED_TIME = re.compile(r"^\d{14}Z$")  # 389-DS: whole seconds, UTC


def settings(server, tree=None, **overrides):
    return source_settings(server, tree, preset="389ds", **overrides)


def read(conn: ldap3.Connection, dn: str, *attributes: str) -> dict | None:
    """An entry's attributes (operational ones only when named), or None when it is gone."""
    try:
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=list(attributes) or ["*"])
    except ldap3.core.exceptions.LDAPNoSuchObjectResult:
        return None
    return conn.response[0]["attributes"]


def unique_id(conn: ldap3.Connection, dn: str, attribute: str = "nsUniqueId") -> str:
    return read(conn, dn, attribute)[attribute][0]


# -- sync ------------------------------------------------------------------------------

def test_first_full_sync_keys_users_by_nsuniqueid_and_reads_nsaccountlock(sqlite_store, ds389):
    rt = runtime_for(sqlite_store, **settings(ds389))
    result = run_sync(rt, "corp")
    assert result.status == "ok", result.error
    assert result.mode == "full"
    assert (result.counts.added, result.counts.errors, result.counts.groups_added) == (len(SEED_PASSWORDS), 0, 3)
    assert result.counts.unresolved_members == 0

    conn = ds389.connection()
    users = users_by_name(sqlite_store)
    assert set(users) == set(SEED_PASSWORDS)
    for uid, user in users.items():
        # nsUniqueId is operational: only there because the search names it
        assert user.source_id == unique_id(conn, ds389.user_dn(uid))
        assert user.active == (uid not in SEED_LOCKED)
        assert dn_key(user.ldap_dn) == dn_key(ds389.user_dn(uid))
    alice = users["alice"]
    assert (alice.display_name, alice.given_name, alice.family_name, alice.email) == (
        "Alice", "Alice", "Aliceson", "alice@example.org")  # no displayName: the cn, as the directory names her
    assert alice.attributes["department"] == "ENG" and alice.attributes["employeeNumber"] == "2001"

    groups = groups_by_name(sqlite_store)
    assert set(groups) == set(SEED_GROUPS)
    assert groups["admins"].source_id == unique_id(conn, ds389.group_dn("admins"))
    assert members(sqlite_store, groups["admins"]) == {"alice", "bob"}
    assert members(sqlite_store, groups["staff"]) == {"carol", "dave"}  # uniqueMember, one with #'0101'B
    assert members(sqlite_store, groups["engineering"]) == {"admins", "erin"}  # nested
    conn.unbind()

    with sqlite_store.read() as session:
        mark = session.get(SyncRun, result.run_id).high_water_mark
    assert GENERALIZED_TIME.match(mark), mark

    again = run_sync(rt, "corp", full=True)
    assert (again.counts.added, again.counts.updated, again.counts.unchanged) == (0, 0, len(SEED_PASSWORDS))
    assert (again.counts.memberships_added, again.counts.memberships_removed) == (0, 0)


@pytest.mark.parametrize("locked", ["true", "TRUE", "True"])
def test_nsaccountlock_values_in_any_case_deactivate(sqlite_store, ds389_tree, locked):
    tree = ds389_tree
    dn = tree.add_user("lock1")
    rt = runtime_for(sqlite_store, **settings(tree.server, tree))
    run_sync(rt, "corp")
    assert users_by_name(sqlite_store)["lock1"].active

    tree.modify(dn, nsAccountLock=locked)
    result = run_sync(rt, "corp", full=True)
    assert result.counts.deactivated == 1 and not users_by_name(sqlite_store)["lock1"].active
    tree.modify(dn, nsAccountLock="false")  # what `dsidm account unlock` leaves on some versions
    run_sync(rt, "corp", full=True)
    assert users_by_name(sqlite_store)["lock1"].active
    tree.modify(dn, nsAccountLock=locked)
    run_sync(rt, "corp", full=True)
    tree.conn.modify(dn, {"nsAccountLock": [(ldap3.MODIFY_DELETE, [])]})
    run_sync(rt, "corp", full=True)
    assert users_by_name(sqlite_store)["lock1"].active


def test_changed_renamed_and_moved_entries_keep_their_user(sqlite_store, ds389_tree):
    tree = ds389_tree
    anna = tree.add_user("anna", departmentNumber="ENG")
    ben = tree.add_user("ben")
    cleo = tree.add_user("cleo")
    tree.add_group("team", [anna, ben, cleo])
    ids = {uid: unique_id(tree.conn, dn) for uid, dn in (("anna", anna), ("ben", ben), ("cleo", cleo))}
    rt = runtime_for(sqlite_store, **settings(tree.server, tree))
    assert run_sync(rt, "corp").counts.added == 3
    before = users_by_name(sqlite_store)

    tree.modify(anna, mail="anna.new@example.org", departmentNumber="Customer Service", displayName="Anna N.")
    tree.rename(ben, "uid=benjamin")  # modrdn: 389-DS replaces uid with the new RDN value
    tree.conn.add(f"ou=moved,{tree.users_base}", ["organizationalUnit"], {"ou": "moved"})
    tree.rename(cleo, "uid=cleo", new_superior=f"ou=moved,{tree.users_base}")  # modrdn with newSuperior
    # 389-DS keeps nsUniqueId over both
    assert unique_id(tree.conn, tree.user_dn("benjamin")) == ids["ben"]
    assert unique_id(tree.conn, f"uid=cleo,ou=moved,{tree.users_base}") == ids["cleo"]

    result = run_sync(rt, "corp", full=True)
    assert result.status == "ok" and (result.counts.added, result.counts.updated) == (0, 3)
    assert result.counts.deactivated == 0
    after = users_by_name(sqlite_store)
    assert set(after) == {"anna", "benjamin", "cleo"}
    assert after["anna"].id == before["anna"].id
    assert after["anna"].email == "anna.new@example.org" and after["anna"].display_name == "Anna N."
    assert after["anna"].attributes["department"] == "Customer Service"
    assert after["benjamin"].id == before["ben"].id and after["benjamin"].source_id == ids["ben"]
    assert after["cleo"].id == before["cleo"].id and "ou=moved" in after["cleo"].ldap_dn
    # referential integrity rewrote the member values: the group follows by DN
    assert members(sqlite_store, groups_by_name(sqlite_store)["team"]) == {"anna", "benjamin", "cleo"}


def test_incremental_sync_by_modifytimestamp(sqlite_store, ds389_tree):
    tree = ds389_tree
    dns = [tree.add_user(f"inc{i}") for i in range(6)]
    tree.add_group("squad", dns[:2])
    time.sleep(1.1)  # modifyTimestamp has whole seconds: make the last change the only one at the mark
    tree.modify(dns[0], title="latest")
    rt = runtime_for(sqlite_store, **settings(tree.server, tree, incremental_overlap=0))
    first = run_sync(rt, "corp")
    assert first.mode == "full" and first.counts.added == 6

    quiet = run_sync(rt, "corp")
    assert quiet.mode == "incremental" and quiet.status == "ok"
    assert quiet.counts.scanned == 1 and quiet.counts.unchanged == 1  # only the entry at the mark

    time.sleep(1.1)
    tree.modify(dns[3], mail="inc3.new@example.org")
    new = tree.add_user("inc_new")
    tree.conn.modify(f"cn=squad,{tree.groups_base}", {"member": [(ldap3.MODIFY_ADD, [new])]})
    changed = run_sync(rt, "corp")
    assert changed.mode == "incremental" and changed.status == "ok"
    assert (changed.counts.added, changed.counts.updated) == (1, 1)
    assert changed.counts.scanned == 4  # inc3, inc_new, the group, and inc0 at the old mark
    assert users_by_name(sqlite_store)["inc3"].email == "inc3.new@example.org"
    assert members(sqlite_store, groups_by_name(sqlite_store)["squad"]) == {"inc0", "inc1", "inc_new"}

    # No accesslog on 389-DS: an incremental sync does not see deletions, the full sync does.
    tree.delete(dns[5])
    assert run_sync(rt, "corp").counts.deactivated == 0
    assert run_sync(rt, "corp", full=True).counts.deactivated == 1


def test_incremental_overlap_reads_recent_changes_again_as_unchanged(sqlite_store, ds389_tree):
    tree = ds389_tree
    for i in range(4):
        tree.add_user(f"ov{i}")
    rt = runtime_for(sqlite_store, **settings(tree.server, tree))  # default overlap: 60 s
    first = run_sync(rt, "corp")
    with sqlite_store.read() as session:
        mark = session.get(SyncRun, first.run_id).high_water_mark
    assert GENERALIZED_TIME.match(mark), mark
    again = run_sync(rt, "corp")
    # everything changed within the last minute is read again, and nothing changes
    assert again.mode == "incremental" and again.counts.scanned == 4 and again.counts.unchanged == 4
    assert again.counts.updated == 0


def test_deletions_by_full_sync_and_the_deletion_guard(sqlite_store, ds389_tree):
    tree = ds389_tree
    dns = [tree.add_user(f"g{i:02d}") for i in range(10)]
    group = tree.add_group("all", dns)
    guard = {"max_percent": 20, "max_count": 5, "min_entries": 1}
    rt = runtime_for(sqlite_store, **settings(tree.server, tree, deletion_guard=guard))
    run_sync(rt, "corp")

    tree.delete(dns[9])
    one = run_sync(rt, "corp", full=True)
    assert one.status == "ok" and one.counts.deactivated == 1
    assert not users_by_name(sqlite_store)["g09"].active
    # 389-DS's referential integrity took the deleted entry out of the group
    assert members(sqlite_store, groups_by_name(sqlite_store)["all"]) == {f"g{i:02d}" for i in range(9)}
    assert read(tree.conn, group, "member")["member"] == dns[:9]

    for dn in dns[:4]:
        tree.delete(dn)
    tree.modify(dns[5], mail="g05.changed@example.org")
    guarded = run_sync(rt, "corp", full=True)
    assert guarded.status == "guarded" and "max_percent" in guarded.guard
    users = users_by_name(sqlite_store)
    assert all(users[f"g{i:02d}"].active for i in range(9))
    assert users["g05"].email == "g05.changed@example.org"
    approved = run_sync(rt, "corp", approve_deletions=True)
    assert approved.status == "approved" and approved.counts.deactivated == 4
    assert sorted(n for n, u in users_by_name(sqlite_store).items() if not u.active) == [
        "g00", "g01", "g02", "g03", "g09"]


def test_an_empty_scan_deactivates_nobody(sqlite_store, ds389_tree):
    tree = ds389_tree
    for i in range(3):
        tree.add_user(f"e{i}")
    guard = {"max_percent": 100, "max_count": 100, "min_entries": 1}
    rt = runtime_for(sqlite_store, **settings(tree.server, tree, deletion_guard=guard))
    run_sync(rt, "corp")
    rt = runtime_for(sqlite_store, **settings(tree.server, tree, deletion_guard=guard,
                                              users_filter="(objectClass=nothingLikeThis)"))
    result = run_sync(rt, "corp", full=True)
    assert result.status == "failed" and "the users search returned no entries" in (result.error or "")
    assert "(objectClass=nothingLikeThis)" in (result.error or "")
    assert all(u.active for u in users_by_name(sqlite_store).values())


# -- bind authentication -----------------------------------------------------------------

def test_bind_authentication_as_the_users_own_dn(ds389, ds389_tree):
    source = load_config_data({"ldap": {"sources": [settings(ds389)]}}).ldap.sources[0]
    assert verify_password(source, ds389.user_dn("alice"), ds389.passwords["alice"])  # PBKDF2 hash made by 389-DS
    assert verify_password(source, ds389.user_dn("bob").upper(), ds389.passwords["bob"])
    assert not verify_password(source, ds389.user_dn("alice"), "not-her-password")
    assert not verify_password(source, ds389.user_dn("alice"), "")  # would be an unauthenticated bind
    assert not verify_password(source, f"uid=ghost,{ds389.users_base}", "whatever")
    # 389-DS itself refuses a bind of a locked account, even with the right password
    assert not verify_password(source, ds389.user_dn("carol"), ds389.passwords["carol"])
    # a {SSHA} value written by a tool (as the Directory Manager may) works too
    dn = ds389_tree.add_user("hashed", password="hashed-Secret-9")
    assert verify_password(source, dn, "hashed-Secret-9")


# -- the freeipa preset ------------------------------------------------------------------

def test_freeipa_preset_reads_ipauniqueid_and_nsaccountlock(sqlite_store, ds389_tree):
    """FreeIPA's users as far as 389-DS can hold them: posixAccount + ipaObject with an
    ipaUniqueID (the fixture adds FreeIPA's schema for it); the rest of FreeIPA is not here."""
    tree = ds389_tree
    ipa_ids: dict[str, str] = {}

    def add_ipa_user(uid: str, number: int, **extra: str) -> str:
        ipa_ids[uid] = str(uuid.uuid4())
        return tree.add_user(uid, objectClass=["inetOrgPerson", "posixAccount", "ipaObject"],
                             ipaUniqueID=ipa_ids[uid], uidNumber=str(number), gidNumber=str(number),
                             homeDirectory=f"/home/{uid}", **extra)

    ivan = add_ipa_user("ivan", 10001)
    add_ipa_user("judy", 10002, nsAccountLock="TRUE")  # FreeIPA writes TRUE
    tree.add_user("notposix")  # not a posixAccount: outside the preset's filter
    group_id = str(uuid.uuid4())  # FreeIPA's groups are ipaObjects too: without an ipaUniqueID none is read
    tree.conn.add(f"cn=ipa-admins,{tree.groups_base}", ["groupOfNames", "ipaObject"],
                  {"cn": "ipa-admins", "member": [ivan], "ipaUniqueID": group_id})
    tree.add_group("no-ipa-id", [ivan])
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree, preset="freeipa"))
    result = run_sync(rt, "corp")
    assert result.status == "ok" and result.counts.errors == 0, result.errors
    users = users_by_name(sqlite_store)
    assert set(users) == {"ivan", "judy"}
    assert users["ivan"].source_id == ipa_ids["ivan"] and users["ivan"].active
    assert users["judy"].source_id == ipa_ids["judy"] and not users["judy"].active
    groups = groups_by_name(sqlite_store)
    assert set(groups) == {"ipa-admins"} and groups["ipa-admins"].source_id == group_id
    assert members(sqlite_store, groups["ipa-admins"]) == {"ivan"}

    tree.rename(ivan, "uid=ivan2")
    run_sync(rt, "corp", full=True)
    after = users_by_name(sqlite_store)
    assert set(after) == {"ivan2", "judy"} and after["ivan2"].id == users["ivan"].id


# -- write-back --------------------------------------------------------------------------

@pytest.fixture
def wb(sqlite_store, ds389_tree):
    tree = ds389_tree
    users_base, groups_base = writeback_subtree(tree)
    rt = runtime_for(sqlite_store, **settings(
        tree.server, tree, users_base=tree.base, groups_base=tree.base,
        writeback={"enabled": True, "users_base": users_base, "groups_base": groups_base}))
    return rt, tree, rt.config.ldap.sources[0]


def test_scim_users_are_written_renamed_locked_and_removed(wb):
    rt, tree, source = wb
    with rt.services.unit(Actor.scim_client("entra")) as uow:
        user = uow.users.create(user_name="Lena.Lang", display_name="Lena Lang", given_name="Lena",
                                family_name="Lang", email="lena@example.org")
    writeback_user(rt, user)
    dn = user_dn(source, "Lena.Lang")
    entry = read(tree.conn, dn, "uid", "mail", "sn", "objectClass", "nsAccountLock")
    assert entry["uid"] == ["Lena.Lang"] and entry["mail"] == ["lena@example.org"] and entry["sn"] == ["Lang"]
    assert "inetOrgPerson" in entry["objectClass"] and entry["nsAccountLock"] == []
    first_id = unique_id(tree.conn, dn)

    with rt.services.unit(Actor.scim_client("entra")) as uow:
        user = uow.users.update(uow.users.get(user.id), user_name="Lena.Berg", family_name="Berg",
                                email="lena.berg@example.org")
    writeback_user(rt, user)
    assert read(tree.conn, dn) is None
    dn = user_dn(source, "Lena.Berg")
    entry = read(tree.conn, dn, "uid", "sn", "mail")
    assert entry["uid"] == ["Lena.Berg"] and entry["sn"] == ["Berg"] and entry["mail"] == ["lena.berg@example.org"]
    assert unique_id(tree.conn, dn) == first_id  # renamed by modrdn, not re-created

    # 389-DS has a disabled flag: the entry stays, locked
    with rt.services.unit(Actor.scim_client("entra")) as uow:
        user = uow.users.deactivate(uow.users.get(user.id))
    writeback_user(rt, user)
    assert read(tree.conn, dn, "nsAccountLock")["nsAccountLock"] == ["TRUE"]
    with rt.services.unit(Actor.scim_client("entra")) as uow:
        user = uow.users.update(uow.users.get(user.id), active=True)
    writeback_user(rt, user)
    assert read(tree.conn, dn, "nsAccountLock")["nsAccountLock"] == []
    assert unique_id(tree.conn, dn) == first_id

    writeback_user_removed(rt, user)
    assert read(tree.conn, dn) is None


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
    assert [dn_key(m) for m in read(tree.conn, dn, "member")["member"]] == [dn_key(user_dn(source, "wb.anna"))]

    # A member someone else added in LDAP stays: the write-back never replaces the attribute.
    foreign = f"uid=someone-else,{tree.users_base}"
    tree.conn.modify(dn, {"member": [(ldap3.MODIFY_ADD, [foreign])]})
    with rt.services.unit(Actor.scim_client("entra")) as uow:
        uow.groups.change_members(uow.groups.get(group.id), add_users=[b.id], remove_users=[a.id])
    writeback_group_members(rt, group, added_user_ids=[b.id], removed_user_ids=[a.id])
    assert {dn_key(m) for m in read(tree.conn, dn, "member")["member"]} == {
        dn_key(user_dn(source, "wb.bernd, jr.")), dn_key(foreign)}

    # The last member goes: member is a MAY of 389-DS's groupOfNames, so no placeholder is needed.
    tree.conn.modify(dn, {"member": [(ldap3.MODIFY_DELETE, [foreign])]})
    writeback_group_members(rt, group, removed_user_ids=[b.id])
    assert read(tree.conn, dn, "member")["member"] == []
    writeback_group_members(rt, group, added_user_ids=[a.id, b.id])
    assert {dn_key(m) for m in read(tree.conn, dn, "member")["member"]} == {
        dn_key(user_dn(source, "wb.anna")), dn_key(user_dn(source, "wb.bernd, jr."))}

    # A deleted user's entry goes, and 389-DS's referential integrity drops its member value.
    writeback_user_removed(rt, a)
    assert [dn_key(m) for m in read(tree.conn, dn, "member")["member"]] == [dn_key(user_dn(source, "wb.bernd, jr."))]

    with rt.services.unit(Actor.scim_client("entra")) as uow:
        renamed = uow.groups.update(uow.groups.get(group.id), display_name="Fleet Süd")
    writeback_group(rt, renamed)
    assert read(tree.conn, dn) is None
    assert len(read(tree.conn, group_dn(source, "Fleet Süd"), "member")["member"]) == 1
    writeback_group_removed(rt, renamed)
    assert read(tree.conn, group_dn(source, "Fleet Süd")) is None

    # The server's audit log: every membership change was one value added or deleted.
    audit = (tree.server.workdir / "log" / "audit").read_text(encoding="utf-8", errors="replace")
    records = [r for r in audit.split("\n\n") if "changetype: modify" in r and "dn: cn=fleet" in r.lower()]
    member_ops = [op for r in records for op in re.findall(r"^(add|delete|replace): member$", r, re.MULTILINE)]
    assert "add" in member_ops and "delete" in member_ops and "replace" not in member_ops, member_ops
    assert all(len(re.findall(r"^member:", r, re.MULTILINE)) == 1 for r in records if "member" in r)


def test_an_empty_group_is_written_without_a_placeholder_member(wb):
    rt, tree, source = wb
    with rt.services.unit(Actor.scim_client("entra")) as uow:
        group = uow.groups.create("Nobody Yet")
    writeback_group(rt, group)
    entry = read(tree.conn, group_dn(source, "Nobody Yet"), "member", "objectClass")
    assert "groupOfNames" in entry["objectClass"] and entry["member"] == []  # not the empty DN
    with rt.services.unit(Actor.scim_client("entra")) as uow:
        user = uow.users.create(user_name="first.member")
        uow.groups.change_members(uow.groups.get(group.id), add_users=[user.id])
    writeback_user(rt, user)
    writeback_group_members(rt, group, added_user_ids=[user.id])
    assert [dn_key(m) for m in read(tree.conn, group_dn(source, "Nobody Yet"), "member")["member"]] == [
        dn_key(user_dn(source, "first.member"))]


def test_written_back_entries_do_not_come_back_as_directory_users(wb):
    rt, tree, source = wb
    tree.add_user("native")
    with rt.services.unit(Actor.scim_client("entra")) as uow:
        scim_user = uow.users.create(user_name="from.scim", email="s@example.org")
        locked = uow.users.create(user_name="locked.scim", email="l@example.org")
        uow.users.deactivate(locked)
    writeback_user(rt, scim_user)
    writeback_user(rt, locked)
    result = run_sync(rt, "corp")
    assert result.status == "ok" and result.counts.errors == 0
    assert set(users_by_name(rt.store)) == {"native"}


@pytest.fixture
def config(ds389_tree) -> Config:
    """The app's config for the SCIM-over-HTTP test: write-back into this test's subtree."""
    base = ds389_tree.base
    for rdn in ("ou=scim", "ou=people,ou=scim", "ou=groups,ou=scim"):
        ds389_tree.conn.add(f"{rdn},{base}", ["organizationalUnit"], {"ou": rdn.split(",")[0][3:]})
    return load_config_data({"ldap": {"sources": [settings(
        ds389_tree.server, ds389_tree, users_base=base, groups_base=base,
        writeback={"enabled": True, "users_base": f"ou=people,ou=scim,{base}",
                   "groups_base": f"ou=groups,ou=scim,{base}"})]}})


def test_scim_requests_are_written_back_to_389ds(client, runtime, ds389_tree):
    tree = ds389_tree
    source = runtime.config.ldap.sources[0]
    entra = Scim(client, create_token(runtime, "entra", "scim"))
    ada = entra.post("/Users", {"schemas": [CORE], "userName": "ada@example.com",
                                "name": {"givenName": "Ada", "familyName": "Lovelace"}}).json
    bob = entra.post("/Users", {"schemas": [CORE], "userName": "bob@example.com"}).json
    assert read(tree.conn, user_dn(source, "ada@example.com"), "sn")["sn"] == ["Lovelace"]

    group = entra.post("/Groups", {"displayName": "Analysts", "members": [{"value": ada["id"]}]}).json
    assert [dn_key(m) for m in read(tree.conn, group_dn(source, "Analysts"), "member")["member"]] == [
        dn_key(user_dn(source, "ada@example.com"))]
    entra.patch(f"/Groups/{group['id']}", [{"op": "Add", "path": "members", "value": [{"value": bob["id"]}]},
                                           {"op": "Remove", "path": f'members[value eq "{ada["id"]}"]'}])
    assert [dn_key(m) for m in read(tree.conn, group_dn(source, "Analysts"), "member")["member"]] == [
        dn_key(user_dn(source, "bob@example.com"))]

    entra.patch(f"/Users/{bob['id']}", [{"op": "replace", "path": "active", "value": False}])
    assert read(tree.conn, user_dn(source, "bob@example.com"), "nsAccountLock")["nsAccountLock"] == ["TRUE"]
    assert entra.delete(f"/Users/{ada['id']}").status_code == 204
    assert read(tree.conn, user_dn(source, "ada@example.com")) is None
    assert entra.delete(f"/Groups/{group['id']}").status_code == 204
    assert read(tree.conn, group_dn(source, "Analysts")) is None
