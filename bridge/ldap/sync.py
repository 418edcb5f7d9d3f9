"""Full and incremental sync of one LDAP source, as one run recorded in the store.

Full sync: stream the paged users, upsert them in batched transactions keyed by
the entry's stable id (a renamed or moved entry updates its user), read the
groups, then remove what the directory no longer returns: users deactivated (or
deleted with ``deletion = "delete"``), groups deleted. Removals happen only
after a complete scan and only when the deletion guard lets them.

Incremental sync: only entries whose change marker (modifyTimestamp, uSNChanged)
is at or past the last high-water mark; deletions come from OpenLDAP's
accesslog when ``accesslog_base`` is set, from AD's DirSync control with
``dirsync = true`` (bridge.ldap.dirsync), otherwise from the next full sync.

A failure (the directory goes away mid-scan) leaves every committed batch as it
was and removes nothing; the run is recorded as failed and the next one starts
from the last complete run's mark.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import ldap3
from ldap3.core.exceptions import LDAPException
from sqlalchemy import Table, select
from sqlalchemy.exc import SQLAlchemyError

from bridge.config import LdapSourceConfig
from bridge.ldap.compact import IdMap, IdSet, Packed
from bridge.ldap.connection import connect
from bridge.ldap.directory import GroupEntry, Reader, UserEntry
from bridge.ldap.dirsync import COOKIE_KEY, Deletions, encode_cookie, last_cookie, read_deletions
from bridge.ldap.dn import dn_key
from bridge.ldap.errors import explain
from bridge.ldap.gcpause import fewer_collections
from bridge.ldap.groups import GROUP_BATCH, GroupWriter
from bridge.ldap.guard import GuardInput, trips
from bridge.ldap.lock import Lease, source_lock
from bridge.ldap.marks import MarkTracker, accesslog_value, since_filter_value
from bridge.ldap.plan import Counts, Plan, SyncResult
from bridge.ldap.presets import AttributeMap, attribute_map
from bridge.ldap.readahead import ReadAhead
from bridge.ldap.users import ENTRY_ERRORS, UserWriter
from bridge.services import Actor, UnitOfWork
from bridge.services.runs import (
    RunInterrupted,
    finish_run,
    last_mark,
    latest_guarded,
    mark_approved,
    set_mode,
    start_run,
)
from bridge.store.among import in_chunks
from bridge.store.models import RunMode, RunStatus, User

if TYPE_CHECKING:
    from bridge.runtime import Runtime

#: users removed (or deactivated) per transaction
REMOVE_BATCH = 500

log = logging.getLogger(__name__)

Progress = Callable[[str, int], None]


#: full scans read in a child process (bridge.ldap.readahead); off, they read in this one
READ_AHEAD = True
class EntryReader(Protocol):
    """Where a sync gets its entries: ``Reader`` in this process, ``ReadAhead`` in a child."""

    def users(self, since: str | None = None) -> Iterator[UserEntry]: ...

    def groups(self, since: str | None = None) -> Iterator[GroupEntry]: ...


def _host(conn: ldap3.Connection) -> str:
    """The server a connection is bound to (a USN mark belongs to one DC)."""
    return str(conn.server.host) if conn.server else ""


class UnknownSource(Exception):
    pass


class NothingToApprove(Exception):
    pass


class NoUsersRead(Exception):
    """A full scan read no user at all: a wrong base or filter far more often than an
    empty directory, so the run fails before it could deactivate anyone."""


def find_source(rt: Runtime, name: str) -> LdapSourceConfig:
    for source in rt.config.ldap.sources:
        if source.name == name:
            return source
    known = ", ".join(s.name for s in rt.config.ldap.sources) or "none configured"
    raise UnknownSource(f"no LDAP source named {name!r} (known: {known})")


def never() -> bool:
    return False


@dataclass
class PreparedSync:
    """A sync with its source's lock held and its run recorded (``run_id``): what is
    left is to ``execute`` it, in this thread or in the run service's (bridge.jobs.runner),
    which then releases the lock."""

    job: SourceSync
    mode: str
    mark: str | None
    run_id: int
    held: ExitStack

    def execute(self) -> SyncResult:
        with self.held:
            return self.job.run(self.run_id, self.mode, self.mark)


def prepare_sync(rt: Runtime, name: str, *, full: bool = False, dry_run: bool = False,
                 approve_deletions: bool = False, progress: Progress | None = None,
                 interrupted: Callable[[], bool] = never) -> PreparedSync:
    """Take the source's lock and record the run. Raises UnknownSource, SyncBusy (another
    sync of the source runs) and NothingToApprove, holding nothing then."""
    source = find_source(rt, name)
    held = ExitStack()
    try:
        lease = held.enter_context(source_lock(rt.store, source.name, rt.replica, rt.clock))
        approved: dict[str, Any] | None = None
        if approve_deletions:
            guarded = latest_guarded(rt.store, source.name)
            if guarded is None:
                raise NothingToApprove(f"no sync of {source.name!r} is waiting for approval")
            approved = {"run": guarded.id, **(guarded.detail or {})}
        mark = last_mark(rt.store, source.name)
        mode = RunMode.full if full or approved is not None or mark is None else RunMode.incremental
        job = SourceSync(rt, source, lease, dry_run=dry_run, approved=approved, progress=progress,
                         interrupted=interrupted)
        run_id = start_run(rt.store, source.name, mode, dry_run, rt.clock())
    except BaseException:
        held.close()  # the lock goes again
        raise
    return PreparedSync(job, mode, mark, run_id, held)


def run_sync(rt: Runtime, name: str, *, full: bool = False, dry_run: bool = False,
             approve_deletions: bool = False, progress: Progress | None = None) -> SyncResult:
    """Run one sync of source ``name`` now, in this thread. Raises UnknownSource, SyncBusy
    and NothingToApprove; a failure of the work itself is recorded and returned as a
    result with status "failed". It stops between batches (status "interrupted") when
    the process's run service is stopping."""
    prepared = prepare_sync(rt, name, full=full, dry_run=dry_run, approve_deletions=approve_deletions,
                            progress=progress, interrupted=rt.runs.interrupting.is_set)
    with rt.runs.tracking_sync(prepared.run_id):
        return prepared.execute()


@dataclass
class Removals:
    users: list[dict[str, Any]] = field(default_factory=list)  # id, user_name, dn
    groups: list[dict[str, Any]] = field(default_factory=list)  # id, name, dn


class SourceSync:
    def __init__(self, rt: Runtime, source: LdapSourceConfig, lease: Lease, *, dry_run: bool,
                 approved: dict[str, Any] | None, progress: Progress | None,
                 interrupted: Callable[[], bool] = never):
        self.rt = rt
        self.source = source
        self.lease = lease
        self.dry_run = dry_run
        self.approved = approved
        self.amap: AttributeMap = attribute_map(source)
        self.actor = Actor.ldap_sync(source.name)
        self.plan = Plan() if dry_run else None
        self.counts = Counts()
        self.errors: list[str] = []
        self._progress = progress
        self._interrupted = interrupted
        #: AD DirSync: what was deleted since the last run, and the cookie for the next
        self.deletions: Deletions | None = None

    def progress(self, phase: str, n: int) -> None:
        """Between batches: stop if another sync took the lease or the process is stopping."""
        self.lease.renew()
        if self._interrupted():
            raise RunInterrupted(f"interrupted after a batch of {phase}: the process is stopping")
        if self._progress is not None:
            self._progress(phase, n)

    # -- the run -----------------------------------------------------------------

    def run(self, run_id: int, mode: str, mark: str | None) -> SyncResult:
        started = self.rt.clock()
        result = SyncResult(run_id, self.source.name, mode, self.dry_run, RunStatus.running, self.counts, self.plan)
        detail: dict[str, Any] = {}
        try:
            with ExitStack() as cleanup:
                since: str | None = None
                conn: ldap3.Connection | None = None
                cookie = last_cookie(self.rt.store, self.source.name) if self.source.dirsync else None
                if mode == RunMode.incremental:
                    conn = connect(self.source)
                    cleanup.callback(conn.unbind)
                    since = since_filter_value(self.amap.marker, mark, _host(conn))
                    if self.source.dirsync and cookie is None:
                        since = None  # no DirSync cookie yet: a full scan takes the first one
                    if since is None:
                        mode = result.mode = "full"  # the mark is from another DC or another kind
                        set_mode(self.rt.store, run_id, mode)
                if self.source.dirsync:
                    # Before the scan: a deletion while it runs is in the next run's answer.
                    if conn is None:
                        conn = connect(self.source)
                        cleanup.callback(conn.unbind)
                    self.deletions = read_deletions(conn, cookie if since is not None else None)
                reader: EntryReader
                feed = self._read_ahead() if since is None else None
                if feed is not None:
                    # A full scan: read in a child process while this one writes.
                    cleanup.enter_context(feed)
                    reader, server = feed, feed.server
                else:
                    if conn is None:
                        conn = connect(self.source)
                        cleanup.callback(conn.unbind)
                    reader, server = Reader(conn, self.source, self.amap), _host(conn)
                tracker = MarkTracker(self.amap.marker)
                if since is None:
                    cleanup.enter_context(fewer_collections())  # a full scan allocates by the million
                removals, guard = self._sync(reader, tracker, since)
                result.high_water_mark = tracker.next_mark(started, self.source.incremental_overlap, mark, server)
                if isinstance(reader, ReadAhead):
                    result.reader_peak_rss_kb, result.reader_cpu_seconds = reader.peak_rss_kb, reader.cpu_seconds
                    result.reader = reader.reader
        except RunInterrupted as exc:  # committed batches stay; the next run starts from the last mark
            result.status, result.error = RunStatus.interrupted, str(exc)
            log.warning("LDAP sync of %s %s", self.source.name, exc, extra={"source": self.source.name})
        except Exception as exc:  # recorded as a failed run; committed batches stay, nothing is removed
            result.status = RunStatus.failed
            directory = isinstance(exc, LDAPException)  # LdapProblem too: an explained LDAPException
            result.error = explain(exc, self.source) if directory else f"{type(exc).__name__}: {exc}"
            expected = directory or isinstance(exc, (OSError, SQLAlchemyError, NoUsersRead))
            log.log(logging.WARNING if expected else logging.ERROR, "LDAP sync of %s failed: %s",
                    self.source.name, result.error, exc_info=not expected, extra={"source": self.source.name})
        else:
            result.guard = guard
            result.would_remove = removals.users
            if guard:
                result.status = RunStatus.guarded
                detail = {"guard": guard, "would_deactivate": removals.users,
                          "would_delete_groups": removals.groups, "plan": self.counts.as_dict()}
                log.warning("LDAP sync of %s stopped by the deletion guard: %s", self.source.name, guard,
                            extra={"source": self.source.name})
            else:
                result.status = RunStatus.approved if self.approved and not self.dry_run else RunStatus.ok
                if self.approved:
                    detail["approves_run"] = self.approved["run"]
                if removals.users or removals.groups:
                    detail["removed"] = {"users": removals.users[:1000], "groups": removals.groups[:1000]}
            if self.deletions is not None and not self.dry_run:
                detail[COOKIE_KEY] = encode_cookie(self.deletions.cookie)
        self.counts.errors = len(self.errors)
        result.errors = self.errors
        if not finish_run(self.rt.store, result, detail, self.rt.clock()):
            result.status = RunStatus.interrupted  # marked so at shutdown while it ran on
        if result.status == RunStatus.approved:
            mark_approved(self.rt.store, self.approved["run"], run_id)  # type: ignore[index]
        log.info(result.summary(), extra={"source": self.source.name, "counts": self.counts.as_dict()})
        return result

    def _read_ahead(self) -> ReadAhead | None:
        """A child process reading the full scan, or None to read in this process (turned
        off, or no process can be started here)."""
        if not READ_AHEAD:
            return None
        try:
            return ReadAhead(self.source)
        except (OSError, ImportError) as exc:
            log.warning("LDAP sync of %s reads in the main process: no reading process (%s: %s)",
                        self.source.name, type(exc).__name__, exc, extra={"source": self.source.name})
            return None

    def _sync(self, reader: EntryReader, tracker: MarkTracker, since: str | None) -> tuple[Removals, str | None]:
        full = since is None
        users = UserWriter(self.rt.services, self.actor, self.plan, frozenset(self.amap.extras))
        # What a full scan remembers of each user, flat (bridge.ldap.compact): 24 bytes a user, not
        # 350 (1,000,000 users). A dry run keeps the DNs, which its plan names.
        user_ids: IdMap | dict[str, str] = IdMap() if full and self.plan is None else {}
        seen = IdSet()
        scanned = 0
        for batch in self._batches(reader.users(since)):
            for entry in batch:
                tracker.see(entry.modified)
                seen.add(entry.source_id)
            scanned += len(batch)
            outcome = users.apply(batch)
            self.counts.add(outcome.counts)
            self.errors.extend(outcome.errors)
            for key, user_id in outcome.ids.items():
                user_ids[key] = user_id
            self.progress("users", len(batch))
        self.counts.scanned = self.counts.users_read = scanned
        # (a source that writes back under its users_base may read nobody else: the deletion
        # guard's min_entries protects it instead)
        if full and scanned == 0 and not self.source.writeback.enabled:
            raise NoUsersRead(
                f"the users search returned no entries (users_base {self.source.users_base!r}, filter "
                f"{self.amap.users_filter!r}): nobody was deactivated; check users_base and users_filter "
                f"of [[ldap.sources]] {self.source.name} (dirbridge check-config searches them)")

        # Packed GROUP_BATCH groups at a time: 10,000 groups' 1,000,000 member DNs are 96 MB as str
        group_entries: Packed[GroupEntry] = Packed(GROUP_BATCH)
        for group_entry in reader.groups(since):
            tracker.see(group_entry.modified)
            group_entries.append(group_entry)
        self.counts.scanned += len(group_entries)

        groups = GroupWriter(self.rt.services, self.actor, self.plan, self.progress)
        stored_groups = groups.stored_groups()
        if full:
            removals = self._gone_in_full_scan(seen, {g.source_id for g in group_entries}, stored_groups)
        else:
            assert isinstance(reader, Reader)  # incremental scans read in this process
            removals = self._gone_from_accesslog(reader, since, stored_groups)
            if self.deletions is not None:
                self._add_deleted(removals, self.deletions.source_ids, stored_groups)
                group_entries += self._groups_of_removed(reader, groups, removals, stored_groups, group_entries)
        guard = self._guard(full, scanned + len(group_entries), removals, len(stored_groups))

        held_users = {u["id"] for u in removals.users} if guard else set()
        held_groups = {g["id"] for g in removals.groups} if guard else set()
        if not full:
            user_ids = {**groups.resolve_users(m for e in group_entries for m in e.member_dns), **user_ids}
        group_ids = groups.upsert(group_entries)
        all_group_ids = {dn_key(dn): gid for gid, _, dn, _ in stored_groups if dn}
        all_group_ids.update(group_ids)
        groups.sync_members(group_entries, group_ids, user_ids, all_group_ids,
                            keep_users=held_users, keep_groups=held_groups)
        self.counts.add(groups.outcome.counts)
        self.errors.extend(groups.outcome.errors)

        if not guard:
            self._remove(removals, groups)
        return removals, guard

    def _batches(self, entries: Iterator[UserEntry]) -> Iterator[list[UserEntry]]:
        """Write batches of ``write_batch`` entries (a page when pages are larger). Large ones
        are cheaper: on SQLite every commit rewrites the index pages the batch touched (random
        ids touch many), so 5 pages of 1,000 in one commit cost a quarter less CPU than 5
        commits. A failed batch still rolls back whole."""
        size = max(self.source.page_size, self.source.write_batch)
        batch: list[UserEntry] = []
        for entry in entries:
            batch.append(entry)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    # -- removals ------------------------------------------------------------------

    def _removable_users(self) -> Any:
        query = select(User.id, User.source_id, User.user_name, User.ldap_dn).where(
            User.source == self.actor.source)
        if self.source.deletion == "deactivate":
            query = query.where(User.active.is_(True))
        # Streamed: an ORM result is otherwise fetched whole (1,000,000 rows of a source).
        return query.execution_options(yield_per=5000)

    def _gone_in_full_scan(self, seen_users: IdSet, seen_groups: set[str],
                           stored_groups: Sequence[tuple[str, str | None, str | None, str]]) -> Removals:
        removals = Removals()
        users: Table = User.__table__  # type: ignore[assignment]
        query = select(users.c.id, users.c.source_id).where(users.c.source == self.actor.source)
        if self.source.deletion == "deactivate":
            query = query.where(users.c.active.is_(True))
        query = query.execution_options(yield_per=5000)
        with self.rt.store.read() as session:
            # Every stored user of the source is matched against the scan: two plain columns,
            # streamed (1,000,000 rows), and the names of only those that are gone.
            connection = session.connection()
            gone = [uid for uid, sid in connection.execute(query)
                    if sid not in seen_users]
            named: dict[str, tuple[str, str | None]] = {}
            for chunk in in_chunks(gone):
                named.update((uid, (name, dn)) for uid, name, dn in connection.execute(
                    select(users.c.id, users.c.user_name, users.c.ldap_dn).where(users.c.id.in_(chunk))))
        # (one deleted meanwhile is not there to remove any more)
        removals.users = [{"id": uid, "user_name": named[uid][0], "dn": named[uid][1]} for uid in gone if uid in named]
        removals.groups = [{"id": gid, "name": name, "dn": dn} for gid, sid, dn, name in stored_groups
                           if sid not in seen_groups]
        return removals

    def _gone_from_accesslog(self, reader: Reader, since: str | None,
                             stored_groups: Sequence[tuple[str, str | None, str | None, str]]) -> Removals:
        removals = Removals()
        if not self.source.accesslog_base or since is None:
            return removals
        gone = {dn_key(dn) for dn in reader.removed_since(self.source.accesslog_base, accesslog_value(since))}
        if not gone:
            return removals
        # An entry deleted and then created again (or moved back) is still there.
        with self.rt.store.read() as session:
            for uid, _sid, name, dn in session.execute(self._removable_users()):
                if dn and dn_key(dn) in gone:
                    removals.users.append({"id": uid, "user_name": name, "dn": dn})
        removals.groups = [{"id": gid, "name": name, "dn": dn} for gid, _sid, dn, name in stored_groups
                           if dn and dn_key(dn) in gone]
        return self._still_present(reader, removals)

    def _add_deleted(self, removals: Removals, source_ids: set[str],
                     stored_groups: Sequence[tuple[str, str | None, str | None, str]]) -> None:
        """Add the users and groups whose objectGUID DirSync reported deleted."""
        if not source_ids:
            return
        listed_users = {u["id"] for u in removals.users}
        with self.rt.store.read() as session:
            for uid, sid, name, dn in session.execute(self._removable_users()):
                if sid in source_ids and uid not in listed_users:
                    removals.users.append({"id": uid, "user_name": name, "dn": dn})
        listed_groups = {g["id"] for g in removals.groups}
        removals.groups.extend({"id": gid, "name": name, "dn": dn} for gid, sid, dn, name in stored_groups
                               if sid in source_ids and gid not in listed_groups)

    def _groups_of_removed(self, reader: Reader, groups: GroupWriter, removals: Removals,
                           stored_groups: Sequence[tuple[str, str | None, str | None, str]],
                           read: Sequence[GroupEntry]) -> list[GroupEntry]:
        """The groups the removed users were in, read again: AD drops a deleted user's
        ``member`` values without changing the groups' uSNChanged, so the change scan
        does not bring them."""
        removed = {u["id"] for u in removals.users}
        if not removed:
            return []
        current, _ = groups.current_members([gid for gid, *_ in stored_groups])
        seen = {dn_key(e.dn) for e in read}
        extra: list[GroupEntry] = []
        for gid, _sid, dn, _name in stored_groups:
            if dn and current.get(gid, set()) & removed and dn_key(dn) not in seen:
                entry = reader.group_at(dn)
                if entry is not None:
                    extra.append(entry)
        return extra

    def _still_present(self, reader: Reader, removals: Removals) -> Removals:
        """Drop from ``removals`` the DNs that exist again in the directory."""
        import ldap3
        from ldap3.core.exceptions import LDAPNoSuchObjectResult

        def exists(dn: str) -> bool:
            try:
                return bool(reader.conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["1.1"]))
            except LDAPNoSuchObjectResult:
                return False
        removals.users = [u for u in removals.users if not exists(u["dn"])]
        removals.groups = [g for g in removals.groups if not exists(g["dn"])]
        return removals

    def _guard(self, full: bool, scanned: int, removals: Removals, stored_groups: int) -> str | None:
        approved_users: set[str] = set()
        approved_groups: set[str] = set()
        if self.approved:
            approved_users = {u["id"] for u in self.approved.get("would_deactivate", [])}
            approved_groups = {g["id"] for g in self.approved.get("would_delete_groups", [])}
        with self.rt.store.read() as session:
            from sqlalchemy import func

            active = session.scalar(select(func.count()).select_from(User).where(
                User.source == self.actor.source, User.active.is_(True))) or 0
        given = GuardInput(
            full_scan=full and not self.approved,
            scanned=scanned,
            active_users=active,
            would_remove_users=len([u for u in removals.users if u["id"] not in approved_users]),
            groups=stored_groups,
            would_remove_groups=len([g for g in removals.groups if g["id"] not in approved_groups]),
        )
        return trips(self.source.deletion_guard, given)

    def _remove(self, removals: Removals, groups: GroupWriter) -> None:
        hard = self.source.deletion == "delete"
        action = "delete" if hard else "deactivate"
        if self.plan is not None:
            self.plan.removals.extend({**u, "action": action} for u in removals.users)
            self.plan.group_removals.extend(removals.groups)
            if hard:
                self.counts.deleted += len(removals.users)
            else:
                self.counts.deactivated += len(removals.users)
            self.counts.groups_removed += len(removals.groups)
            return
        ids = [u["id"] for u in removals.users]
        for batch in in_chunks(ids, REMOVE_BATCH):
            done, errors = self._remove_users(batch, hard, isolate=False)
            if errors is None:
                done, errors = self._remove_users(batch, hard, isolate=True)
            if hard:
                self.counts.deleted += done
            else:
                self.counts.deactivated += done
            self.errors.extend(errors or [])
            self.progress("removals", len(batch))
        groups.remove([g["id"] for g in removals.groups])
        self.counts.groups_removed += len(removals.groups)

    @staticmethod
    def _gone(uow: UnitOfWork, user: User) -> None:
        """Deactivate a user whose entry left the directory, and forget the DN it was at:
        a group's member DN that still names it (no referential integrity) then resolves
        to nobody in an incremental run, as in a full one, and the two stop undoing each
        other. The entry coming back (its stable id) gives the user its DN again."""
        uow.users.update(user, active=False, ldap_dn=None)

    def _remove_users(self, ids: Sequence[str], hard: bool, *, isolate: bool) -> tuple[int, list[str] | None]:
        errors: list[str] = []
        done = 0
        try:
            with self.rt.services.unit(self.actor) as uow:
                for user in uow.session.scalars(select(User).where(User.id.in_(ids))):
                    try:
                        if isolate:
                            with uow.session.begin_nested():
                                uow.users.delete(user) if hard else self._gone(uow, user)
                        else:
                            uow.users.delete(user) if hard else self._gone(uow, user)
                        done += 1
                    except ENTRY_ERRORS as exc:
                        if not isolate:
                            raise
                        errors.append(f"user {user.ldap_dn}: {getattr(exc, 'message', type(exc).__name__)}")
        except ENTRY_ERRORS:
            if isolate:
                raise
            return 0, None
        return done, errors
