"""The sync lock of an LDAP source (bridge/ldap/lock.py): a short lease that its live
holder's heartbeat keeps, that a killed holder's successor takes over once it ran out,
and that still refuses a second sync while the first runs. The lease times are made
short here (seconds); the real ones are LEASE_SECONDS and RENEW_EVERY_SECONDS."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select, update

from bridge.clock import utcnow
from bridge.ldap import lock
from bridge.ldap.lock import LeaseLost, SyncBusy, lease_name, source_lock
from bridge.ldap.sync import run_sync
from bridge.runtime import build_runtime
from bridge.store import Store
from bridge.store.models import LeaderLease, SyncRun
from tests.fixtures.app import REPO, make_config
from tests.fixtures.slapd import LdapTree, source_settings

LEASE, RENEW, RETRY = 1.5, 0.25, 0.2
REAL_LEASE, REAL_RENEW, REAL_RETRY = lock.LEASE_SECONDS, lock.RENEW_EVERY_SECONDS, lock.RETRY_SECONDS


@pytest.fixture(autouse=True)
def short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock, "LEASE_SECONDS", LEASE)
    monkeypatch.setattr(lock, "RENEW_EVERY_SECONDS", RENEW)
    monkeypatch.setattr(lock, "RETRY_SECONDS", RETRY)


def _refused(store: Store, replica: str = "other") -> bool:
    try:
        with source_lock(store, "corp", replica):
            return False
    except SyncBusy:
        return True


def _lease(store: Store) -> LeaderLease | None:
    with store.read() as session:
        return session.get(LeaderLease, lease_name("corp"))


def test_the_real_lease_is_short_and_renewed_often() -> None:
    assert 30 <= REAL_LEASE <= 60  # a dead holder blocks the next sync this long at most
    assert REAL_RENEW * 3 <= REAL_LEASE and REAL_RETRY * 5 <= REAL_LEASE - REAL_RENEW  # room for failed renewals


def test_a_live_holder_keeps_the_lease_past_its_length(store: Store) -> None:
    with source_lock(store, "corp", "holder") as lease:
        first = _lease(store)
        assert first is not None and first.holder == lease.holder
        deadline = time.monotonic() + 3 * LEASE
        checks = 0
        while time.monotonic() < deadline:
            assert _refused(store), "another sync took the lease of a live holder"
            checks += 1
            time.sleep(0.2)
        lease.renew()  # still ours: no LeaseLost
        row = _lease(store)
        assert row is not None and row.holder == lease.holder and row.expires_at > first.expires_at
    assert checks > 10
    assert _lease(store) is None  # released on the way out
    assert not _refused(store)  # and the next one gets it at once


KILLED_HOLDER = textwrap.dedent("""
    import sys, time
    from bridge.ldap import lock
    from bridge.store import Store
    from bridge.store.models import SyncRun
    lock.LEASE_SECONDS, lock.RENEW_EVERY_SECONDS = float(sys.argv[2]), float(sys.argv[3])
    store = Store(sys.argv[1])
    with lock.source_lock(store, "corp", "doomed"):
        with store.write() as session:
            session.add(SyncRun(source="corp", mode="full", status="running"))
        print("held", flush=True)
        time.sleep(600)
""")


def test_a_killed_holders_lease_is_taken_over_once_it_ran_out(store: Store) -> None:
    proc = subprocess.Popen([sys.executable, "-c", KILLED_HOLDER, store.url, str(LEASE), str(RENEW)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held", proc.stderr.read()
        alive_until = time.monotonic() + 2 * LEASE  # alive: its heartbeat keeps the lease past its length
        while time.monotonic() < alive_until:
            assert _refused(store)
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed = time.monotonic()
        row = _lease(store)
        assert row is not None and row.holder.startswith("doomed:")  # never released
        assert _refused(store)  # not before it ran out
        while _refused(store):
            assert time.monotonic() - killed < LEASE + RENEW + 5, "the dead holder's lease was never taken over"
            time.sleep(0.05)
        waited = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert waited <= LEASE + RENEW + 1.0, waited
    with store.read() as session:
        runs = list(session.scalars(select(SyncRun).where(SyncRun.source == "corp")))
    assert [(r.status, "abandoned" in r.detail.get("error", "")) for r in runs] == [("failed", True)]


def test_two_syncs_started_at_once_one_is_refused(store: Store) -> None:
    for round_ in range(5):
        barrier = threading.Barrier(2)
        outcomes: list[str] = []
        release = threading.Event()

        def contender(n: int, barrier: threading.Barrier = barrier, outcomes: list[str] = outcomes,
                      release: threading.Event = release) -> None:
            barrier.wait()
            try:
                with source_lock(store, "corp", f"replica{n}"):
                    outcomes.append("held")
                    release.wait(10)
            except SyncBusy:
                outcomes.append("refused")
                release.set()

        threads = [threading.Thread(target=contender, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(outcomes) == ["held", "refused"], (round_, outcomes)
        assert _lease(store) is None


@pytest.fixture
def corp(store: Store, ldap_tree: LdapTree) -> Iterator[object]:
    ldap_tree.server.ldapadd("".join(
        f"dn: uid=lock{i:03d},{ldap_tree.users_base}\nobjectClass: inetOrgPerson\nuid: lock{i:03d}\n"
        f"cn: lock {i}\nsn: lock\nmail: lock{i:03d}@example.org\n\n" for i in range(30)))
    yield build_runtime(make_config(ldap={"sources": [source_settings(ldap_tree.server, ldap_tree, page_size=5)]}),
                        store=store)


def test_a_second_sync_is_refused_while_one_runs_longer_than_the_lease(store: Store, corp) -> None:  # type: ignore[no-untyped-def]
    rt = corp
    paused, resume = threading.Event(), threading.Event()
    results: list[object] = []

    def slow(phase: str, n: int) -> None:
        if phase == "users" and not paused.is_set():
            paused.set()
            resume.wait(30)

    first = threading.Thread(target=lambda: results.append(run_sync(rt, "corp", full=True, progress=slow)))
    first.start()
    try:
        assert paused.wait(30), "the first sync never reached its users"
        time.sleep(2 * LEASE)  # longer than the lease: only the heartbeat keeps it
        with pytest.raises(SyncBusy):
            run_sync(rt, "corp", full=True)
    finally:
        resume.set()
        first.join(60)
    assert len(results) == 1 and results[0].status == "ok", results  # type: ignore[attr-defined]
    assert run_sync(rt, "corp").status == "ok"  # free again once the first ended


def test_a_holder_whose_lease_was_taken_over_is_told(store: Store) -> None:
    with source_lock(store, "corp", "slow") as lease:
        # As if it had been cut off longer than the lease and another sync had taken over.
        with store.write() as session:
            session.execute(update(LeaderLease).where(LeaderLease.name == lease_name("corp"))
                            .values(holder="other:1234"))
        deadline = time.monotonic() + 5
        while not lease.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LeaseLost):
            lease.renew()
    row = _lease(store)
    assert row is not None and row.holder == "other:1234"  # the other's lease is left alone


def test_a_lease_that_could_not_be_released_is_over_for_its_own_process(store: Store,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The database was away when the block ended: the lease row stays (another process
    waits for it to run out), this process takes it over at once, and it is deleted in
    the background once the database answers."""
    real_delete = lock._delete
    refusals = {"left": 0}

    def delete(*args):  # type: ignore[no-untyped-def]
        if refusals["left"]:
            refusals["left"] -= 1
            raise OSError("the database is away")
        return real_delete(*args)

    monkeypatch.setattr(lock, "_delete", delete)
    refusals["left"] = 1
    with source_lock(store, "corp", "cut"):
        pass
    row = _lease(store)
    assert row is not None and row.holder.startswith("cut:") and row.expires_at > utcnow()
    with source_lock(store, "corp", "same-process") as lease:  # at once, not after LEASE
        assert _lease(store).holder == lease.holder  # type: ignore[union-attr]
    assert _lease(store) is None
    refusals["left"] = 2  # the release and the first retry in the background
    with source_lock(store, "corp", "cut-again"):
        pass
    assert _lease(store) is not None
    deadline = time.monotonic() + LEASE
    while _lease(store) is not None:
        assert time.monotonic() < deadline, "the lease was not deleted once the database was back"
        time.sleep(0.05)
    assert not lock._ended
