"""Faults injected into real processes: PostgreSQL stopped mid-request and mid-sync, slapd
stopped mid-sync, `dirbridge serve` sent SIGTERM or SIGKILL during a Bulk request and
during an LDAP sync. After each: the store is consistent (no half-applied batch or Bulk,
nobody deactivated by a failed sync), the next run completes, and what was acknowledged
is kept. (The leader replica killed is tests/integration/test_leader.py; slapd stopped
in the users phase of a full sync is tests/integration/test_ldap_sync.py.)"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bridge.ldap.sync import run_sync
from bridge.runtime import build_runtime
from bridge.store import Store, migrate
from bridge.store.models import SyncRun, User
from tests.fixtures.app import make_config
from tests.fixtures.slapd import LdapTree, source_settings, sync_losing_the_directory
from tests.reliability.conftest import Report
from tests.reliability.harness import BULK_REQUEST, Daemon, Http, PgCluster, make_token, new_user, run_cli, start_daemon


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of this module's own, which its tests stop and start."""
    cluster = PgCluster.create()
    yield cluster
    cluster.destroy()


def _users(store: Store, source: str | None = None) -> dict[str, User]:
    with store.read() as session:
        query = select(User) if source is None else select(User).where(User.source == source)
        return {u.user_name: u for u in session.scalars(query)}


def _ldap_source_toml(tree: LdapTree, page_size: int, full: str) -> str:
    server = tree.server
    return (f'[[ldap.sources]]\nname = "corp"\nurl = "{server.url}"\npreset = "openldap"\n'
            f'bind_dn = "{server.admin_dn}"\nbind_password = "{server.admin_password}"\n'
            f'users_base = "{tree.users_base}"\ngroups_base = "{tree.groups_base}"\npage_size = {page_size}\n'
            f'write_batch = 1\nreceive_timeout = 5\n[ldap.sources.tls]\nmode = "none"\n'
            f'[ldap.sources.deletion_guard]\nmax_percent = 100\nmax_count = 100000\nmin_entries = 0\n'
            f'[ldap.sources.schedule]\nfull = "{full}"\nincremental = "1d"\n')


def _add_users(tree: LdapTree, prefix: str, count: int) -> None:
    tree.server.ldapadd("".join(
        f"dn: uid={prefix}{i:05d},{tree.users_base}\nobjectClass: inetOrgPerson\nuid: {prefix}{i:05d}\n"
        f"cn: {prefix} {i}\nsn: {prefix}\nmail: {prefix}{i:05d}@example.org\n\n" for i in range(count)))


# -- the database goes away ----------------------------------------------------------------

def test_postgresql_stopped_mid_request_then_back(pg_cluster: PgCluster, tmp_path: Path, report: Report) -> None:
    url = pg_cluster.create_database(f"faults_{uuid.uuid4().hex[:8]}")
    daemon = start_daemon(tmp_path / "serve", url)
    token = make_token(url, "faults")
    acked: dict[str, str] = {}
    answers: list[int | str] = []
    stop = threading.Event()

    def writer(n: int) -> None:
        http, i = Http(daemon.port, token, timeout=20), 0
        while not stop.is_set():
            i += 1
            name = f"pgdown-{n}-{i:04d}"
            try:
                reply = http.request("POST", "/scim/v2/Users", new_user(name))
            except OSError as exc:
                answers.append(type(exc).__name__)
                continue
            answers.append(reply.status)
            if reply.status == 201:
                acked[reply.json()["id"]] = name
        http.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        before = len(acked)
        pg_cluster.stop("immediate")  # every backend killed, mid-transaction
        time.sleep(2.0)
        during = [a for a in answers[-40:]]
        pg_cluster.start()
        deadline = time.monotonic() + 30
        after_restart = len(acked)
        while len(acked) < after_restart + 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert len(acked) >= after_restart + 20, f"no writes after PostgreSQL came back: {answers[-20:]}"
        assert before > 0
        assert any(a != 201 for a in during), "the outage was not noticed"
        assert all(isinstance(a, int) and (a < 500 or a in (500, 503)) for a in answers), set(map(str, answers))
        assert Http(daemon.port).request("GET", "/readyz").status == 200
        store = Store(url)
        try:
            stored = {u.id: u.user_name for u in _users(store).values()}
        finally:
            store.dispose()
        lost = [name for user_id, name in acked.items() if stored.get(user_id) != name]
        report.add("acknowledged", what="PostgreSQL stopped mid-request", checked=len(acked), lost=len(lost))
        assert not lost
    finally:
        stop.set()
        code = daemon.stop()
    refused = sum(1 for a in answers if a != 201)
    report.add("faults", name="PostgreSQL stopped (immediate) mid-request, started again", survived=code == 0,
               detail=f"{len(acked)} acknowledged, {refused} refused while it was down")
    assert code == 0, daemon.log()


def _cut_sync_by_postgres(pg_cluster: PgCluster, tree: LdapTree) -> tuple[Store, object, str]:
    """A full sync whose database is stopped (immediate) after its first batch, then started."""
    url = pg_cluster.create_database(f"faults_{uuid.uuid4().hex[:8]}")
    store = Store(url)
    migrate.upgrade(store.engine)
    _add_users(tree, "pgs", 40)
    source = source_settings(tree.server, tree, page_size=10, write_batch=1)  # a batch is a page
    rt = build_runtime(make_config(ldap={"sources": [source]}), store=store)
    assert run_sync(rt, "corp").status == "ok"
    assert len(_users(store, "ldap:corp")) == 40
    _add_users(tree, "pgt", 30)

    def stop_database(phase: str, n: int) -> None:
        if phase == "users" and pg_cluster.proc is not None and pg_cluster.proc.poll() is None:
            pg_cluster.stop("immediate")

    try:
        outcome = run_sync(rt, "corp", full=True, progress=stop_database).status
    except Exception as exc:  # noqa: BLE001 - the run could not even record its failure
        outcome = type(exc).__name__
    finally:
        pg_cluster.start()
    return store, rt, outcome


def test_postgresql_stopped_mid_sync_leaves_the_store_consistent(pg_cluster: PgCluster, ldap_tree: LdapTree,
                                                                 report: Report) -> None:
    store, _, outcome = _cut_sync_by_postgres(pg_cluster, ldap_tree)
    try:
        assert outcome != "ok"
        users = _users(store, "ldap:corp")
        assert all(u.active for u in users.values()), "a failed sync deactivated users"
        assert len(users) >= 40 and (len(users) - 40) % 10 == 0, f"half a batch applied: {len(users)} users"
    finally:
        store.dispose()
    report.add("faults", name="PostgreSQL stopped mid-sync: store consistent", survived=True,
               detail=f"cut run: {outcome}")


def test_the_next_sync_completes_once_postgresql_is_back(pg_cluster: PgCluster, ldap_tree: LdapTree,
                                                         report: Report) -> None:
    """The cut sync could not release its lease (the database was down): its process
    knows the lease is over and its next sync takes it over at once, without waiting
    for the lease to run out (bridge/ldap/lock.py)."""
    store, rt, outcome = _cut_sync_by_postgres(pg_cluster, ldap_tree)
    try:
        again = run_sync(rt, "corp", full=True)  # type: ignore[arg-type]
        assert again.status == "ok", again.error
        users = _users(store, "ldap:corp")
        assert len(users) == 70 and all(u.active for u in users.values())
        with store.read() as session:
            assert not session.scalar(select(func.count()).select_from(SyncRun).where(SyncRun.status == "running"))
    finally:
        store.dispose()
    report.add("faults", name="PostgreSQL stopped mid-sync: the next sync completes at once", survived=True,
               detail=f"cut run: {outcome}")


def test_slapd_stopped_mid_incremental_sync(sqlite_url: str, ldap_tree: LdapTree, report: Report) -> None:
    store = Store(sqlite_url)
    migrate.upgrade(store.engine)
    _add_users(ldap_tree, "inc", 20)
    source = source_settings(ldap_tree.server, ldap_tree, page_size=5, write_batch=1, receive_timeout=5)
    rt = build_runtime(make_config(ldap={"sources": [source]}), store=store)
    try:
        assert run_sync(rt, "corp").status == "ok"
        _add_users(ldap_tree, "inn", 12)

        cut = sync_losing_the_directory(rt, ldap_tree)
        assert cut.mode == "incremental" and cut.status == "failed"
        users = _users(store, "ldap:corp")
        assert all(u.active for u in users.values()), "a failed incremental sync deactivated users"
        assert (len(users) - 20) % 5 == 0
        with store.read() as session:
            assert session.get(SyncRun, cut.run_id).high_water_mark is None  # the mark did not move
        after = run_sync(rt, "corp")
        assert after.status == "ok" and after.mode == "incremental"
        users = _users(store, "ldap:corp")
        assert len(users) == 32 and all(u.active for u in users.values())
    finally:
        store.dispose()
    report.add("faults", name="slapd stopped mid incremental sync", survived=True)


# -- the daemon is stopped or killed ---------------------------------------------------------

BULK_OPERATIONS = 300


def _bulk(prefix: str) -> dict:
    """failOnErrors = 1: all or nothing (else each operation commits on its own)."""
    return {"schemas": [BULK_REQUEST], "failOnErrors": 1, "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": f"b{i}", "data": new_user(f"{prefix}-{i:04d}")}
        for i in range(BULK_OPERATIONS)]}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_daemon_signalled_during_a_bulk_request(db_url: str, tmp_path: Path, signum: int, report: Report) -> None:
    daemon = start_daemon(tmp_path / "serve", db_url)
    token = make_token(db_url, "bulk")
    http = Http(daemon.port, token, timeout=120)
    before = [http.request("POST", "/scim/v2/Users", new_user(f"kept-{i:03d}")).status for i in range(10)]
    assert before == [201] * 10
    prefix = f"bulk{uuid.uuid4().hex[:6]}"
    answer: list[object] = []
    sender = threading.Thread(target=lambda: answer.append(_try(http, "POST", "/scim/v2/Bulk", _bulk(prefix))))
    sender.start()
    time.sleep(0.4)  # the Bulk request is being applied (it takes a few seconds)
    code = daemon.stop(signum)
    sender.join(120)
    assert answer and not sender.is_alive()
    restarted = start_daemon(tmp_path / "serve", db_url)
    try:
        store = Store(db_url)
        try:
            names = set(_users(store))
        finally:
            store.dispose()
        applied = sum(1 for n in names if n.startswith(prefix))
        reply = answer[0]
        acknowledged = getattr(reply, "status", None) == 200
        if acknowledged:
            statuses = {op["status"] for op in reply.json()["Operations"]}  # type: ignore[union-attr]
            assert statuses == {"201"}, statuses
        assert applied in (0, BULK_OPERATIONS), f"half a Bulk request applied: {applied}"
        if acknowledged:
            assert applied == BULK_OPERATIONS
        if signum == signal.SIGTERM:
            assert code == 0 and acknowledged, (code, reply, daemon.log())  # graceful: the request finished
        kept = sum(1 for i in range(10) if f"kept-{i:03d}" in names)
        assert kept == 10
        assert Http(restarted.port, token).request("POST", "/scim/v2/Users", new_user(prefix + "-after")).status == 201
    finally:
        http.close()
        restarted.stop()
    report.add("acknowledged", what=f"{signal.Signals(signum).name} during Bulk", checked=10 + (
        BULK_OPERATIONS if acknowledged else 0), lost=0)
    report.add("faults", name=f"{signal.Signals(signum).name} of dirbridge serve during a Bulk request "
                              f"({db_url.split(':')[0].split('+')[0]})", survived=True,
               detail=f"Bulk {'acknowledged' if acknowledged else 'not acknowledged'}, {applied} of "
                      f"{BULK_OPERATIONS} applied, exit {code}")


def _try(http: Http, method: str, path: str, body: dict) -> object:
    try:
        return http.request(method, path, body)
    except OSError as exc:
        return exc


def _wait_mid_sync(store: Store, total: int, timeout: float = 60) -> int:
    """Wait until a sync of ``corp`` has written some but not all of ``total`` users."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.read() as session:
            running = session.scalar(select(func.count()).select_from(SyncRun).where(SyncRun.status == "running"))
            count = session.scalar(select(func.count()).select_from(User).where(User.source == "ldap:corp")) or 0
        if running and 0 < count < total:
            return count
        time.sleep(0.02)
    raise AssertionError("no sync was seen half-way")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_daemon_signalled_during_a_scheduled_sync(sqlite_url: str, ldap_tree: LdapTree, tmp_path: Path,
                                                  signum: int, report: Report) -> None:
    total, page = 800, 40
    _add_users(ldap_tree, "sig", total)
    store = Store(sqlite_url)
    migrate.upgrade(store.engine)
    daemon: Daemon = start_daemon(tmp_path / "serve", sqlite_url, _ldap_source_toml(ldap_tree, page, "2s"))
    try:
        seen = _wait_mid_sync(store, total)
        code = daemon.stop(signum)
        users = _users(store, "ldap:corp")
        assert all(u.active for u in users.values()), "a cut sync deactivated users"
        assert len(users) % page == 0, f"half a batch applied: {len(users)} users"
        if signum == signal.SIGTERM:
            assert code == 0, daemon.log()
            with store.read() as session:
                states = set(session.scalars(select(SyncRun.status)))
            assert "running" not in states, states  # a graceful stop lets the sync end
        if signum == signal.SIGKILL:
            # The next sync waits for the killed process's lease to run out (LEASE_SECONDS, 45 s; a
            # live holder renews it): tests/integration/test_ldap_lock.py.
            report.add("faults", name="SIGKILL of dirbridge serve during a sync: store consistent", survived=True,
                       detail=f"{len(users)} of {total} users written in whole batches when killed")
        else:
            result = run_cli(daemon.config, "sync", "corp", "--full")
            assert result.returncode == 0, result.stdout + result.stderr
            users = _users(store, "ldap:corp")
            assert len(users) == total and all(u.active for u in users.values())
            report.add("faults", name="SIGTERM of dirbridge serve during a sync", survived=True,
                       detail=f"{seen} users written when signalled; exit {code}; next sync complete")
    finally:
        if daemon.proc.poll() is None:
            daemon.stop(signal.SIGKILL)
        store.dispose()
