"""Incremental sync against a real slapd: only what changed since the high-water mark,
deletions from the accesslog overlay, and the jobs that schedule both."""

from __future__ import annotations

import time

from sqlalchemy import select

from bridge.jobs.registry import job_specs
from bridge.jobs.scheduler import run_job
from bridge.ldap.sync import run_sync
from bridge.store.models import SyncRun, User
from tests.fixtures.slapd import source_settings
from tests.integration.test_ldap_sync import groups_by_name, members, runtime_for, users_by_name


def test_incremental_reads_only_changed_entries(sqlite_store, ldap_tree):
    tree = ldap_tree
    dns = [tree.add_user(f"inc{i}") for i in range(6)]
    tree.add_group("squad", dns[:2])
    time.sleep(1.1)  # modifyTimestamp has whole seconds: make the last change the only one at the mark
    tree.modify(dns[0], title="latest")
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree, incremental_overlap=0))
    first = run_sync(rt, "corp")
    assert first.mode == "full" and first.counts.added == 6

    quiet = run_sync(rt, "corp")
    assert quiet.mode == "incremental" and quiet.status == "ok"
    # Only the entry at the mark itself is read again, not the whole directory.
    assert quiet.counts.scanned == 1 and quiet.counts.unchanged == 1

    time.sleep(1.1)
    tree.modify(dns[3], mail="inc3.new@example.org")
    new = tree.add_user("inc_new")
    tree.conn.modify(f"cn=squad,{tree.groups_base}", {"member": [("MODIFY_ADD", [new])]})
    changed = run_sync(rt, "corp")
    assert changed.mode == "incremental" and changed.status == "ok"
    assert (changed.counts.added, changed.counts.updated) == (1, 1)
    assert changed.counts.scanned == 4  # inc3, inc_new, the group, and inc0 at the old mark
    users = users_by_name(sqlite_store)
    assert users["inc3"].email == "inc3.new@example.org"
    assert members(sqlite_store, groups_by_name(sqlite_store)["squad"]) == {"inc0", "inc1", "inc_new"}

    # Without the accesslog an incremental sync cannot see deletions; the full sync does.
    tree.delete(dns[5])
    assert run_sync(rt, "corp").counts.deactivated == 0
    assert run_sync(rt, "corp", full=True).counts.deactivated == 1


def test_incremental_applies_deletions_from_the_accesslog(sqlite_store, ldap_tree):
    tree = ldap_tree
    dns = [tree.add_user(f"al{i}") for i in range(5)]
    tree.add_group("loggers", dns)
    tree.conn.add(f"ou=elsewhere,{tree.base}", ["organizationalUnit"], {"ou": "elsewhere"})
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree, accesslog_base=tree.server.accesslog_base))
    run_sync(rt, "corp")

    tree.delete(dns[0])
    tree.rename(dns[1], "uid=al1", new_superior=f"ou=elsewhere,{tree.base}")  # moved out of scope
    tree.rename(dns[2], "uid=al2-renamed")  # renamed in place: still there
    result = run_sync(rt, "corp")
    assert result.mode == "incremental" and result.status == "ok"
    assert result.counts.deactivated == 2
    users = users_by_name(sqlite_store)
    assert not users["al0"].active and not users["al1"].active
    assert users["al2-renamed"].active and users["al3"].active
    assert members(sqlite_store, groups_by_name(sqlite_store)["loggers"]) == {"al2-renamed", "al3", "al4"}


def test_incremental_deletions_pass_the_guard_too(sqlite_store, ldap_tree):
    tree = ldap_tree
    dns = [tree.add_user(f"ag{i}") for i in range(6)]
    settings = source_settings(tree.server, tree, accesslog_base=tree.server.accesslog_base,
                               deletion_guard={"max_percent": 100, "max_count": 2, "min_entries": 1})
    rt = runtime_for(sqlite_store, **settings)
    run_sync(rt, "corp")
    for dn in dns[:3]:
        tree.delete(dn)
    result = run_sync(rt, "corp")
    assert result.mode == "incremental" and result.status == "guarded" and "max_count = 2" in result.guard
    assert all(u.active for u in users_by_name(sqlite_store).values())
    approved = run_sync(rt, "corp", approve_deletions=True)
    assert approved.status == "approved" and approved.counts.deactivated == 3


def test_the_jobs_run_full_and_incremental_syncs(sqlite_store, ldap_tree):
    tree = ldap_tree
    tree.add_user("jobber")
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree, schedule={"full": "0 3 * * *",
                                                                                  "incremental": "15m"}))
    specs = {s.name: s for s in job_specs(rt)}
    assert specs["ldap-full:corp"].schedule == "0 3 * * *"
    assert specs["ldap-incremental:corp"].schedule == "15m"
    job = run_job(rt, specs["ldap-incremental:corp"])
    assert job.outcome == "ok" and job.counts["added"] == 1
    job = run_job(rt, specs["ldap-full:corp"])
    assert job.outcome == "ok"
    with sqlite_store.read() as session:
        modes = list(session.scalars(select(SyncRun.mode).where(SyncRun.source == "corp").order_by(SyncRun.id)))
        assert modes == ["full", "full"]  # the first incremental had no mark: it ran a full sync
        assert session.scalar(select(User.user_name).where(User.source == "ldap:corp")) == "jobber"


def test_a_guarded_scheduled_sync_shows_as_a_failed_job(sqlite_store, ldap_tree):
    tree = ldap_tree
    dns = [tree.add_user(f"jg{i}") for i in range(3)]
    settings = source_settings(tree.server, tree, schedule={"full": "1d", "incremental": None},
                               deletion_guard={"max_percent": 10, "max_count": 50, "min_entries": 1})
    rt = runtime_for(sqlite_store, **settings)
    spec = next(s for s in job_specs(rt) if s.name == "ldap-full:corp")
    assert run_job(rt, spec).outcome == "ok"
    tree.delete(dns[0])
    job = run_job(rt, spec)
    assert job.outcome == "failed" and "deletion guard" in job.message and "--approve-deletions" in job.message


def test_full_and_incremental_syncs_agree_on_a_dangling_member(sqlite_store, ldap_tree):
    """A group whose member names an entry deleted from the directory (no referential
    integrity, common on OpenLDAP): the full sync and the incremental sync resolve it the
    same way (not a member), so syncing a directory that does not change changes nothing."""
    tree = ldap_tree
    dns = [tree.add_user(f"dang{i}") for i in range(4)]
    group = tree.add_group("dangling", dns)
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree, incremental_overlap=0))
    assert run_sync(rt, "corp", full=True).counts.memberships_added == 4
    tree.delete(dns[3])  # the memberof overlay's refint takes it out of the group...
    tree.conn.modify(group, {"member": [("MODIFY_ADD", [dns[3]])]})  # ...a careless tool puts it back

    first = run_sync(rt, "corp", full=True)
    assert (first.counts.deactivated, first.counts.memberships_removed) == (1, 1)
    changes = []
    for n, full in enumerate((False, True, False, True)):
        time.sleep(1.1)
        tree.modify(group, description=f"touched {n}")  # the incremental sync reads the group again
        result = run_sync(rt, "corp", full=full)
        assert result.status == "ok" and result.mode == ("full" if full else "incremental")
        changes.append((result.mode, result.counts.memberships_added, result.counts.memberships_removed))
    assert changes == [("incremental", 0, 0), ("full", 0, 0), ("incremental", 0, 0), ("full", 0, 0)]
    assert members(sqlite_store, groups_by_name(sqlite_store)["dangling"]) == {"dang0", "dang1", "dang2"}
