"""Full sync against a real slapd: what a directory's users and groups become in the store."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from bridge.ldap.dn import dn_key
from bridge.ldap.sync import run_sync
from bridge.runtime import build_runtime
from bridge.store import Store
from bridge.store.models import AuditEvent, Group, GroupGroupMember, GroupUserMember, SyncRun, User
from tests.fixtures.app import make_config
from tests.fixtures.net import free_port
from tests.fixtures.slapd import SEED_GROUPS, SEED_PASSWORDS, source_settings, sync_losing_the_directory


def runtime_for(store: Store, **source):
    return build_runtime(make_config(ldap={"sources": [source]}), store=store)


def users_by_name(store: Store) -> dict[str, User]:
    with store.read() as session:
        return {u.user_name: u for u in session.scalars(select(User).where(User.source == "ldap:corp"))}


def groups_by_name(store: Store) -> dict[str, Group]:
    with store.read() as session:
        return {g.display_name: g for g in session.scalars(select(Group).where(Group.source == "ldap:corp"))}


def members(store: Store, group: Group) -> set[str]:
    """user names and group names directly in ``group``"""
    with store.read() as session:
        names = set(session.scalars(select(User.user_name).join(GroupUserMember).where(
            GroupUserMember.group_id == group.id)))
        names |= set(session.scalars(select(Group.display_name).join(
            GroupGroupMember, GroupGroupMember.child_group_id == Group.id)
            .where(GroupGroupMember.group_id == group.id)))
    return names


def test_first_sync_brings_every_user_and_group(store, slapd):
    rt = runtime_for(store, **source_settings(slapd))
    result = run_sync(rt, "corp")
    assert result.status == "ok", result.error
    assert result.mode == "full"  # no earlier run: the first sync is a full one
    assert (result.counts.added, result.counts.errors, result.counts.groups_added) == (len(SEED_PASSWORDS), 0, 5)

    users = users_by_name(store)
    assert set(users) == set(SEED_PASSWORDS)
    alice = users["alice"]
    assert (alice.display_name, alice.given_name, alice.family_name, alice.email) == (
        "Alice Anderson", "Alice", "Anderson", "alice@example.org")
    assert alice.active and alice.source_id and alice.kind.value == "internal"
    assert alice.attributes["department"] == "ADM" and alice.attributes["employeeNumber"] == "1001"
    assert dn_key(alice.ldap_dn) == dn_key(slapd.user_dn("alice"))
    # Escaped and non-ASCII DNs arrive as the same entries.
    assert dn_key(users["jsmith"].ldap_dn) == dn_key(slapd.user_dn("jsmith"))
    assert users["jmueller"].display_name == "Jürgen Müller"

    groups = groups_by_name(store)
    assert set(groups) == set(SEED_GROUPS)
    assert dn_key(groups["engineering"].ldap_dn) == dn_key(slapd.group_dn("engineering"))
    assert members(store, groups["engineering"]) == {"developers", "operations", "grace"}  # nested groups
    assert members(store, groups["international"]) == {"jmueller", "jsmith", "heidi"}  # by DN, escapes and umlauts
    assert members(store, groups["developers"]) == {"carol", "dave", "jmueller"}

    with store.read() as session:
        run = session.get(SyncRun, result.run_id)
        assert (run.status, run.mode, run.added, run.errors) == ("ok", "full", len(SEED_PASSWORDS), 0)
        assert run.finished_at is not None and run.high_water_mark
        # Every change went through the service layer: audited as the sync.
        actors = set(session.scalars(select(AuditEvent.actor).where(AuditEvent.source == "ldap:corp")))
        assert actors == {"sync:corp"}

    again = run_sync(rt, "corp", full=True)
    assert (again.counts.added, again.counts.updated, again.counts.unchanged) == (0, 0, len(SEED_PASSWORDS))
    assert (again.counts.memberships_added, again.counts.memberships_removed) == (0, 0)


def test_groups_read_in_packed_chunks_sync_as_read_whole(store, slapd, monkeypatch):
    """A full scan keeps its groups Packed, GROUP_BATCH at a time (bridge.ldap.compact), and
    walks them in slices: with chunks of 2 the 5 groups span three chunks, two of them
    packed, and nested groups point across chunks; the store ends as with one chunk."""
    monkeypatch.setattr("bridge.ldap.sync.GROUP_BATCH", 2)
    monkeypatch.setattr("bridge.ldap.groups.GROUP_BATCH", 2)
    rt = runtime_for(store, **source_settings(slapd))
    result = run_sync(rt, "corp", full=True)
    assert result.status == "ok", result.error
    assert (result.counts.groups_added, result.counts.errors) == (5, 0)
    groups = groups_by_name(store)
    assert set(groups) == set(SEED_GROUPS)
    assert members(store, groups["engineering"]) == {"developers", "operations", "grace"}
    assert members(store, groups["international"]) == {"jmueller", "jsmith", "heidi"}
    assert members(store, groups["developers"]) == {"carol", "dave", "jmueller"}
    again = run_sync(rt, "corp", full=True)
    assert (again.counts.groups_added, again.counts.groups_updated, again.counts.groups_removed) == (0, 0, 0)
    assert (again.counts.memberships_added, again.counts.memberships_removed) == (0, 0)


def test_changed_renamed_and_moved_entries_update_the_same_user(sqlite_store, ldap_tree):
    tree = ldap_tree
    anna = tree.add_user("anna", departmentNumber="ENG")
    ben = tree.add_user("ben")
    tree.add_user("cleo")
    team = tree.add_group("team", [anna, ben])
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree))
    assert run_sync(rt, "corp").counts.added == 3
    before = users_by_name(sqlite_store)

    tree.modify(anna, mail="anna.new@example.org", departmentNumber="Customer Service", displayName="Anna N.")
    tree.rename(ben, "uid=benjamin")  # modrdn: the uid changes with the RDN
    tree.conn.add(f"ou=moved,{tree.users_base}", ["organizationalUnit"], {"ou": "moved"})
    tree.rename(tree.user_dn("cleo"), "uid=cleo", new_superior=f"ou=moved,{tree.users_base}")

    result = run_sync(rt, "corp", full=True)
    assert result.status == "ok" and (result.counts.added, result.counts.updated) == (0, 3)
    after = users_by_name(sqlite_store)
    assert set(after) == {"anna", "benjamin", "cleo"}
    assert after["anna"].id == before["anna"].id
    assert after["anna"].email == "anna.new@example.org" and after["anna"].display_name == "Anna N."
    assert after["anna"].attributes["department"] == "Customer Service"
    assert after["benjamin"].id == before["ben"].id  # renamed: the same user, not a second one
    assert after["cleo"].id == before["cleo"].id and "ou=moved" in after["cleo"].ldap_dn
    # The group follows the rename by DN (slapd's refint rewrote the member value).
    assert members(sqlite_store, groups_by_name(sqlite_store)["team"]) == {"anna", "benjamin"}
    assert team


def test_one_attribute_or_one_member_changed_in_an_unchanged_directory_is_applied(store, ldap_tree):
    """A full sync tells most entries unchanged from their stored rows alone: a change in a
    single attribute (or a managed attribute gone) and a single membership still go through,
    through the service layer (audited), and nothing else is written."""
    tree = ldap_tree
    dns = [tree.add_user(f"same{i}", departmentNumber=f"D{i}", employeeNumber=str(i)) for i in range(6)]
    tree.add_group("left", dns[:3])
    right = tree.add_group("right", dns[3:])
    rt = runtime_for(store, **source_settings(tree.server, tree))
    assert run_sync(rt, "corp").counts.added == 6
    assert run_sync(rt, "corp", full=True).counts.unchanged == 6
    before = users_by_name(store)

    tree.modify(dns[1], departmentNumber="D99")  # one attribute of one user
    tree.modify(dns[4], employeeNumber=[])  # a managed attribute gone
    tree.modify(right, member=[dns[3], dns[5], dns[0]])  # one member out, one in
    result = run_sync(rt, "corp", full=True)
    counts = result.counts
    assert result.status == "ok", result.error
    assert (counts.added, counts.updated, counts.unchanged) == (0, 2, 4)
    assert (counts.memberships_added, counts.memberships_removed) == (1, 1)
    after = users_by_name(store)
    assert after["same1"].attributes["department"] == "D99" and after["same1"].version == before["same1"].version + 1
    assert "employeeNumber" not in after["same4"].attributes
    assert all(after[n].version == before[n].version for n in ("same0", "same2", "same3", "same5"))
    assert members(store, groups_by_name(store)["right"]) == {"same0", "same3", "same5"}
    assert members(store, groups_by_name(store)["left"]) == {"same0", "same1", "same2"}
    with store.read() as session:
        events = session.execute(select(AuditEvent.action, AuditEvent.target_name).where(
            AuditEvent.source == "ldap:corp", AuditEvent.at >= after["same1"].updated_at)).all()
    assert sorted(events) == [("group.members", "right"), ("user.update", "same1"), ("user.update", "same4")]

    again = run_sync(rt, "corp", full=True).counts  # and then nothing more
    assert (again.updated, again.unchanged, again.memberships_added, again.memberships_removed) == (0, 6, 0, 0)


def test_deleted_entries_are_deactivated_then_reactivated(sqlite_store, ldap_tree):
    tree = ldap_tree
    dns = [tree.add_user(f"user{i}") for i in range(5)]
    group = tree.add_group("all", dns)
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree))
    run_sync(rt, "corp")

    tree.delete(dns[0])
    result = run_sync(rt, "corp", full=True)
    assert result.status == "ok" and result.counts.deactivated == 1
    users = users_by_name(sqlite_store)
    assert not users["user0"].active and users["user0"].deactivated_at is not None  # soft: still there
    assert all(users[f"user{i}"].active for i in range(1, 5))
    assert members(sqlite_store, groups_by_name(sqlite_store)["all"]) == {f"user{i}" for i in range(1, 5)}

    # Created again (a new entry, a new entryUUID): the same userName takes the user back.
    again = tree.add_user("user0")
    tree.conn.modify(group, {"member": [("MODIFY_ADD", [again])]})
    result = run_sync(rt, "corp", full=True)
    assert result.status == "ok" and result.counts.errors == 0
    users = users_by_name(sqlite_store)
    assert users["user0"].active and dn_key(users["user0"].ldap_dn) == dn_key(again)


def test_hard_delete_when_configured(sqlite_store, ldap_tree):
    tree = ldap_tree
    dns = [tree.add_user(f"hard{i}") for i in range(3)]
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree, deletion="delete"))
    run_sync(rt, "corp")
    tree.delete(dns[2])
    result = run_sync(rt, "corp", full=True)
    assert result.counts.deleted == 1
    assert set(users_by_name(sqlite_store)) == {"hard0", "hard1"}


def test_guard_stops_mass_deactivation_until_approved(sqlite_store, ldap_tree):
    tree = ldap_tree
    dns = [tree.add_user(f"g{i:02d}") for i in range(10)]
    settings = source_settings(tree.server, tree, deletion_guard={"max_percent": 20, "max_count": 5, "min_entries": 1})
    rt = runtime_for(sqlite_store, **settings)
    run_sync(rt, "corp")

    for dn in dns[:4]:
        tree.delete(dn)
    tree.modify(dns[5], mail="g05.changed@example.org")
    guarded = run_sync(rt, "corp", full=True)
    assert guarded.status == "guarded"
    assert "40.0%" in guarded.guard and "max_percent" in guarded.guard
    users = users_by_name(sqlite_store)
    assert all(u.active for u in users.values())  # nothing deactivated ...
    assert users["g05"].email == "g05.changed@example.org"  # ... the other changes applied
    with sqlite_store.read() as session:
        run = session.get(SyncRun, guarded.run_id)
        assert run.status == "guarded"
        assert sorted(u["user_name"] for u in run.detail["would_deactivate"]) == ["g00", "g01", "g02", "g03"]
        assert run.detail["guard"] == guarded.guard and "plan" in run.detail

    # The next scheduled sync is stopped the same way ...
    assert run_sync(rt, "corp", full=True).status == "guarded"
    # ... until an operator approves.
    approved = run_sync(rt, "corp", approve_deletions=True)
    assert approved.status == "approved" and approved.counts.deactivated == 4
    assert sorted(n for n, u in users_by_name(sqlite_store).items() if not u.active) == ["g00", "g01", "g02", "g03"]
    with sqlite_store.read() as session:
        assert session.get(SyncRun, approved.run_id).status == "approved"


def test_an_empty_scan_deactivates_nobody(sqlite_store, ldap_tree):
    tree = ldap_tree
    for i in range(3):
        tree.add_user(f"e{i}")
    settings = source_settings(tree.server, tree, deletion_guard={"max_percent": 100, "max_count": 100,
                                                                  "min_entries": 1})
    rt = runtime_for(sqlite_store, **settings)
    run_sync(rt, "corp")
    # A wrong filter (or a service account that suddenly sees nothing) returns no entries.
    rt = runtime_for(sqlite_store, **{**settings, "users_filter": "(objectClass=nothingLikeThis)"})
    result = run_sync(rt, "corp", full=True)
    assert result.status == "failed" and "the users search returned no entries" in (result.error or "")
    assert all(u.active for u in users_by_name(sqlite_store).values())


def test_dry_run_changes_nothing_and_shows_the_plan(sqlite_store, ldap_tree):
    tree = ldap_tree
    keep = tree.add_user("keep")
    gone = tree.add_user("gone")
    tree.add_group("crew", [keep, gone])
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree))
    run_sync(rt, "corp")
    tree.modify(keep, mail="keep.new@example.org")
    tree.delete(gone)
    tree.add_user("fresh")
    tree.add_group("newcrew", [keep])

    with sqlite_store.read() as session:
        audit_before = session.scalar(select(func.count()).select_from(AuditEvent))
    users_before = {n: (u.email, u.active, u.version) for n, u in users_by_name(sqlite_store).items()}
    result = run_sync(rt, "corp", full=True, dry_run=True)
    assert result.status == "ok" and result.dry_run
    lines = result.plan.lines()
    assert any(line.startswith("+ user fresh") for line in lines)
    assert any("~ user keep: email: 'keep@example.org' -> 'keep.new@example.org'" in line for line in lines)
    assert any(line.startswith("- user gone (deactivate") for line in lines)
    assert any(line.startswith("+ group newcrew") for line in lines)
    assert any(line.startswith("~ members of crew:") and "-gone" in line for line in lines)

    assert {n: (u.email, u.active, u.version) for n, u in users_by_name(sqlite_store).items()} == users_before
    assert set(groups_by_name(sqlite_store)) == {"crew"}
    with sqlite_store.read() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == audit_before
        assert session.get(SyncRun, result.run_id).dry_run


def test_failover_to_the_second_url(sqlite_store, slapd):
    dead = f"ldap://127.0.0.1:{free_port()}"
    rt = runtime_for(sqlite_store, **source_settings(slapd, url=[dead, slapd.url]))
    result = run_sync(rt, "corp")
    assert result.status == "ok" and result.counts.added == len(SEED_PASSWORDS)


@pytest.mark.parametrize("read_ahead", [True, False], ids=["read-ahead", "in-process"])
def test_a_sync_cut_off_half_way_leaves_the_store_consistent(store, ldap_tree, monkeypatch, read_ahead):
    """The directory goes away after the first batch is written: the batches written
    stay whole, nothing is deactivated, the run fails, the next run completes. Read
    ahead in a child process, more pages than the first may have arrived (what its
    queue and the pipe held when the server stopped), still far fewer than all."""
    monkeypatch.setattr("bridge.ldap.sync.READ_AHEAD", read_ahead)
    tree = ldap_tree
    total, page = 1500, 3
    tree.server.ldapadd("".join(
        f"dn: uid=cut{i:04d},{tree.users_base}\nobjectClass: inetOrgPerson\nuid: cut{i:04d}\ncn: Cut {i}\n"
        f"sn: Cut\nmail: cut{i:04d}@example.org\n\n" for i in range(total)))
    rt = runtime_for(store, **source_settings(tree.server, tree, page_size=page, write_batch=page,
                                                     receive_timeout=5))

    failed = sync_losing_the_directory(rt, tree)
    assert failed.status == "failed" and failed.error
    users = users_by_name(store)
    written = len(users)
    assert written % page == 0 and page <= written < total  # whole batches only, not the whole scan
    if not read_ahead:
        assert written == page  # the first batch, whole; nothing of the next
    assert all(u.active for u in users.values())
    with store.read() as session:
        run = session.get(SyncRun, failed.run_id)
        assert run.status == "failed" and run.finished_at is not None and run.detail["error"]
        assert run.high_water_mark is None

    # The next run (a full one: the failed run left no mark) completes.
    rt = runtime_for(store, **source_settings(tree.server, tree, page_size=500))
    result = run_sync(rt, "corp")
    assert result.status == "ok" and result.mode == "full"
    assert (result.counts.added, result.counts.unchanged) == (total - written, written)
    assert len(users_by_name(store)) == total


def test_a_large_group_with_more_than_5000_members(sqlite_store, ldap_tree):
    tree = ldap_tree
    count = 5001
    ldif = "".join(
        f"dn: uid=m{i:05d},{tree.users_base}\nobjectClass: inetOrgPerson\nuid: m{i:05d}\ncn: M {i}\nsn: M\n\n"
        for i in range(count))
    members_ldif = "".join(f"member: uid=m{i:05d},{tree.users_base}\n" for i in range(count))
    ldif += f"dn: cn=everyone,{tree.groups_base}\nobjectClass: groupOfNames\ncn: everyone\n{members_ldif}\n"
    tree.server.ldapadd(ldif)
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree, page_size=1000))
    result = run_sync(rt, "corp")
    assert result.status == "ok" and result.counts.added == count
    assert result.counts.memberships_added == count
    with sqlite_store.read() as session:
        group = session.scalar(select(Group).where(Group.display_name == "everyone"))
        assert session.scalar(select(func.count()).select_from(GroupUserMember).where(
            GroupUserMember.group_id == group.id)) == count

    tree.conn.modify(f"cn=everyone,{tree.groups_base}",
                     {"member": [("MODIFY_DELETE", [f"uid=m00007,{tree.users_base}"])]})
    result = run_sync(rt, "corp", full=True)
    assert (result.counts.memberships_added, result.counts.memberships_removed) == (0, 1)


def test_dns_with_plus_signs_commas_and_umlauts(sqlite_store, ldap_tree):
    tree = ldap_tree
    plus = f"cn=Ops+uid=opsbot,{tree.users_base}"
    tree.conn.add(plus, ["inetOrgPerson"], {"cn": "Ops", "uid": "opsbot", "sn": "Bot"})
    comma = tree.add_user("mueller", rdn="Müller, Größe + Söhne")
    group = tree.add_group("Ä, Ö & Ü", [plus, comma])
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree))
    result = run_sync(rt, "corp")
    assert result.status == "ok" and result.counts.unresolved_members == 0
    users = users_by_name(sqlite_store)
    assert dn_key(users["mueller"].ldap_dn) == dn_key(comma)
    assert members(sqlite_store, groups_by_name(sqlite_store)["Ä, Ö & Ü"]) == {"opsbot", "mueller"}
    assert dn_key(groups_by_name(sqlite_store)["Ä, Ö & Ü"].ldap_dn) == dn_key(group)


def test_a_user_name_owned_by_another_source_is_an_error_not_a_takeover(sqlite_store, ldap_tree):
    from bridge.services import Actor

    tree = ldap_tree
    tree.add_user("taken")
    tree.add_user("free")
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree))
    with rt.services.unit(Actor.scim_client("entra")) as uow:
        uow.users.create(user_name="taken", email="taken@idp.example")
    result = run_sync(rt, "corp")
    assert result.status == "ok" and result.counts.added == 1 and result.counts.errors == 1
    assert "taken" in result.errors[0]
    with sqlite_store.read() as session:
        assert session.scalar(select(User.source).where(User.user_name == "taken")) == "scim:entra"


def test_never_two_syncs_of_one_source_at_once(sqlite_store, ldap_tree):
    from bridge.ldap.lock import SyncBusy

    tree = ldap_tree
    for i in range(4):
        tree.add_user(f"lock{i}")
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree, page_size=1))
    inside, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def slow(phase: str, n: int) -> None:
        inside.set()
        release.wait(10)

    worker = threading.Thread(target=lambda: outcome.update(first=run_sync(rt, "corp", progress=slow)))
    worker.start()
    try:
        assert inside.wait(10)
        with pytest.raises(SyncBusy):
            run_sync(rt, "corp", full=True)
    finally:
        release.set()
        worker.join(20)
    assert outcome["first"].status == "ok"
    assert run_sync(rt, "corp").status == "ok"  # the lock is free again


def test_active_directory_range_retrieval_follows_every_range():
    """AD hands out a large group's members in ranges (``member;range=0-1499``, then
    asked-for ranges up to one ending in ``*``). slapd cannot do this, so a scripted
    connection answers as AD does: this tests the retrieval loop, not an AD server."""
    import uuid

    from bridge.ldap.directory import EntryParser
    from bridge.ldap.presets import attribute_map

    config = make_config(ldap={"sources": [{"name": "ad", "url": "ldaps://dc1.example.org",
                                            "preset": "active_directory",
                                            "users_base": "DC=example,DC=org"}]})
    ranges = {"member;range=3-*": ("Member;range=3-5", ["CN=d,DC=x", "CN=e,DC=x", "CN=f,DC=x"]),
              "member;range=6-*": ("member;range=6-*", ["CN=g,DC=x"])}
    asked: list[list[str]] = []

    class ScriptedConnection:
        response: list[dict] = []

        def search(self, base, search_filter, scope, attributes):
            asked.append(attributes)
            key, values = ranges[attributes[0]]
            self.response = [{"dn": base, "attributes": {key: values}}]
            return True

    entry = {"dn": "CN=big,DC=x", "attributes": {
        "objectGUID": ["(text form, unused)"], "cn": ["big"],
        "member;range=0-2": ["CN=a,DC=x", "CN=b,DC=x", "CN=c,DC=x"]},
        "raw_attributes": {"objectGUID": [bytes(range(16))]}}
    group = EntryParser(attribute_map(config.ldap.sources[0])).group(ScriptedConnection(), entry)
    assert group is not None and group.name == "big"
    assert group.source_id == str(uuid.UUID(bytes_le=bytes(range(16))))  # objectGUID, shown as a UUID
    assert group.member_dns == [f"CN={c},DC=x" for c in "abcdefg"]
    assert asked == [["member;range=3-*"], ["member;range=6-*"]]


def test_a_full_scan_that_reads_no_user_fails_and_deactivates_nobody(sqlite_store, ldap_tree):
    """users_base moved to an OU that exists but holds no users (a typo one level down, a
    filter that matches nothing): the run fails saying so, before any removal."""
    tree = ldap_tree
    for i in range(3):
        tree.add_user(f"kept{i}")
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree))
    assert run_sync(rt, "corp", full=True).counts.added == 3
    tree.conn.add(f"ou=empty,{tree.base}", ["organizationalUnit"], {"ou": "empty"})
    emptied = runtime_for(sqlite_store, **source_settings(tree.server, tree, users_base=f"ou=empty,{tree.base}"))
    result = run_sync(emptied, "corp", full=True)
    assert result.status == "failed" and result.counts.deactivated == 0
    assert "the users search returned no entries" in (result.error or "")
    assert f"ou=empty,{tree.base}" in (result.error or "") and "users_base" in (result.error or "")
    assert all(u.active for u in users_by_name(sqlite_store).values())


def test_the_display_name_falls_back_to_cn(sqlite_store, ldap_tree):
    """inetOrgPerson requires cn, not displayName: a directory that never sets displayName
    still shows people by name."""
    tree = ldap_tree
    tree.conn.add(f"uid=ghopper,{tree.users_base}", ["inetOrgPerson"],
                  {"uid": "ghopper", "cn": "Grace Hopper", "sn": "Hopper", "mail": "grace@example.org"})
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree))
    assert run_sync(rt, "corp", full=True).counts.added == 1
    assert users_by_name(sqlite_store)["ghopper"].display_name == "Grace Hopper"


def test_a_dry_run_shows_what_the_store_would_refuse_and_records_nothing(sqlite_store, ldap_tree):
    """The dry run tries the writes the service layer would refuse (a name another source
    holds, a bad userName) in a transaction it rolls back: errors shown, nothing kept, no
    conflict opened, no refusal audited."""
    from sqlalchemy import func, select

    from bridge.services import Actor
    from bridge.store.models import AuditEvent, SourceConflict

    tree = ldap_tree
    tree.add_user("dry.fine")
    tree.add_user("dry.taken")
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree))
    with rt.services.unit(Actor(name="test")) as uow:
        uow.users.create(user_name="dry.taken", email="taken@example.org")
    with sqlite_store.read() as session:
        events_before = session.scalar(select(func.count()).select_from(AuditEvent))
    result = run_sync(rt, "corp", full=True, dry_run=True)
    assert result.status == "ok" and result.counts.added == 2 and result.counts.errors == 1
    assert len(result.errors) == 1 and "dry.taken" in result.errors[0] and "held by local" in result.errors[0]
    with sqlite_store.read() as session:
        assert session.scalar(select(func.count()).select_from(SourceConflict)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == events_before
    assert users_by_name(sqlite_store) == {}  # nothing of the directory kept


def test_a_user_whose_entry_vanished_is_still_a_directory_user(sqlite_store, ldap_tree):
    """Its DN is forgotten (so no group's stale member DN names it) but it still belongs to
    the directory: no local password can be set for it, as before."""
    from bridge.services import Actor
    from bridge.services.accounts import is_directory_user

    tree = ldap_tree
    gone = tree.add_user("gone.user")
    tree.add_user("stays.user")
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree))
    run_sync(rt, "corp", full=True)
    tree.delete(gone)
    run_sync(rt, "corp", full=True)
    user = users_by_name(sqlite_store)["gone.user"]
    assert not user.active and user.ldap_dn is None and is_directory_user(user)
    with rt.services.read(Actor(name="test")) as uow:
        assert is_directory_user(uow.users.get(user.id))


def test_retention_keeps_the_sync_runs_a_sync_still_reads(sqlite_store):
    from datetime import timedelta

    from bridge.clock import utcnow
    from bridge.config import load_config_data
    from bridge.runtime import build_runtime
    from bridge.store.models import SyncRun

    rt = build_runtime(load_config_data({}), store=sqlite_store)
    old = utcnow() - timedelta(days=400)
    with sqlite_store.write() as session:
        for n, (mode, status) in enumerate((("full", "ok"), ("incremental", "ok"), ("full", "failed"),
                                            ("incremental", "ok"), ("full", "guarded"), ("full", "failed"))):
            session.add(SyncRun(source="corp", mode=mode, status=status, started_at=old + timedelta(hours=n),
                                finished_at=old + timedelta(hours=n), high_water_mark=f"m{n}"))
    purged = rt.services.purge_history(utcnow() - timedelta(days=365))
    with sqlite_store.read() as session:
        kept = [(r.mode, r.status) for r in session.scalars(select(SyncRun).order_by(SyncRun.id))]
    # the latest complete run of each mode (full: the guarded one, whose mark counts; incremental:
    # the last ok one, which is also the source's latest success), the guarded one waiting
    assert kept == [("incremental", "ok"), ("full", "guarded")], kept
    assert purged["sync_runs_purged"] == 4


def test_a_sales_rep_removed_from_the_directorys_sales_group_loses_customer_access(sqlite_store, ldap_tree):
    """CustomerSalesRepresentatives comes from the directory: a full sync that finds the rep
    gone from it ends the rep's customer access (the assignment stays, unused)."""
    from bridge.services import Actor
    from bridge.store.models import Group, GroupUserMember

    tree = ldap_tree
    rep_dn, other = tree.add_user("rep.one"), tree.add_user("stays.here")
    sales_dn = tree.add_group("CustomerSalesRepresentatives", [rep_dn, other])
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree))
    assert run_sync(rt, "corp", full=True).status == "ok"
    with rt.services.unit(Actor(name="test")) as uow:
        customer = uow.customers.create(number="600", name="Kunde", remote_access=True)
        uow.customers.assign_sales(customer, uow.users.by_ref("rep.one"))

    def sales_memberships() -> set[str]:
        with sqlite_store.read() as session:
            rep_id = users_by_name(sqlite_store)["rep.one"].id
            return {g for g, in session.execute(
                select(Group.display_name).join(GroupUserMember, GroupUserMember.group_id == Group.id)
                .where(GroupUserMember.user_id == rep_id, GroupUserMember.origin.like("sales:%")))}

    assert sales_memberships() == {"X600-Kunde", "RemoteUsers", "RemoteAdministrators"}
    tree.conn.modify(sales_dn, {"member": [("MODIFY_DELETE", [rep_dn])]})
    assert run_sync(rt, "corp", full=True).status == "ok"
    assert sales_memberships() == set()
