"""Groups of one source into the store: the groups themselves (display name = cn,
``ldap_dn``), then their members resolved by DN to users and nested groups.

Members are compared as parsed DNs (``dn_key``), so ``cn=Smith\\, John`` matches
``cn=Smith\\2C John`` and non-ASCII names match however the server escapes them.
Membership changes are applied in batched transactions, each batch one
``change_members_many`` of the service layer (a few statements per batch, not an
ORM object per member).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from bridge.ldap.directory import GroupEntry
from bridge.ldap.dn import dn_key
from bridge.ldap.plan import Counts, Plan
from bridge.ldap.users import ENTRY_ERRORS
from bridge.services import Actor, ServiceError, Services
from bridge.services.groups import SOURCE_ORIGIN, MemberDelta, direct_members
from bridge.services.unit import UnitOfWork
from bridge.store.among import in_chunks
from bridge.store.models import Group, User

GROUP_BATCH = 200
MEMBER_BATCH = 5000


@dataclass
class MemberChange:
    group_id: str
    name: str
    add_users: set[str] = field(default_factory=set)
    remove_users: set[str] = field(default_factory=set)
    add_groups: set[str] = field(default_factory=set)
    remove_groups: set[str] = field(default_factory=set)

    @property
    def size(self) -> int:
        return len(self.add_users) + len(self.remove_users) + len(self.add_groups) + len(self.remove_groups)


@dataclass
class GroupOutcome:
    counts: Counts = field(default_factory=Counts)
    errors: list[str] = field(default_factory=list)


class GroupWriter:
    def __init__(self, services: Services, actor: Actor, plan: Plan | None,
                 progress: Callable[[str, int], None] | None = None):
        self.services = services
        self.store = services.store
        self.actor = actor
        self.source = actor.source
        self.plan = plan
        self.progress = progress or (lambda phase, n: None)
        self.outcome = GroupOutcome()

    # -- reads -----------------------------------------------------------------

    def stored_groups(self) -> list[tuple[str, str | None, str | None, str]]:
        """(id, source_id, ldap_dn, display_name) of every group of this source."""
        with self.store.read() as session:
            return [tuple(r) for r in session.execute(  # type: ignore[misc]
                select(Group.id, Group.source_id, Group.ldap_dn, Group.display_name)
                .where(Group.source == self.source))]

    def resolve_users(self, dns: Iterable[str]) -> dict[str, str]:
        """DN key -> user id for the given member DNs among this source's users: exact
        strings first (one indexed query per chunk), parsed DNs for the rest."""
        wanted = {dn_key(dn): dn for dn in dns}
        found: dict[str, str] = {}
        with self.store.read() as session:
            for chunk in in_chunks(list(wanted.values())):
                for uid, ldap_dn in session.execute(select(User.id, User.ldap_dn).where(
                        User.source == self.source, User.ldap_dn.in_(chunk))):
                    if ldap_dn is not None:
                        found[dn_key(ldap_dn)] = uid
            if len(found) < len(wanted):
                for uid, ldap_dn in session.execute(select(User.id, User.ldap_dn).where(
                        User.source == self.source, User.ldap_dn.is_not(None))):
                    key = dn_key(ldap_dn or "")
                    if key in wanted:
                        found.setdefault(key, uid)
        return found

    # -- groups ----------------------------------------------------------------

    def upsert(self, entries: Sequence[GroupEntry]) -> dict[str, str]:
        """Create or update the groups; returns DN key -> group id of these entries."""
        ids: dict[str, str] = {}
        for batch in in_chunks(entries, GROUP_BATCH):
            if self.plan is not None:
                ids.update(self._plan_groups(batch))
                continue
            try:
                with self.services.unit(self.actor) as uow:
                    result = self._write_groups(uow, batch, isolate=False)
            except ENTRY_ERRORS:
                with self.services.unit(self.actor) as uow:
                    result = self._write_groups(uow, batch, isolate=True)
            ids.update(result[0])
            self.outcome.counts.add(result[1])
            self.outcome.errors.extend(result[2])
            self.progress("groups", len(batch))
        return ids

    def _existing(self, session: Any, batch: Sequence[GroupEntry]) -> dict[str, Group]:
        rows = session.scalars(select(Group).where(Group.source == self.source,
                                                   Group.source_id.in_([g.source_id for g in batch])))
        return {g.source_id: g for g in rows}

    @staticmethod
    def _wanted(entry: GroupEntry) -> dict[str, Any]:
        return {"display_name": (entry.name or entry.dn).strip(), "ldap_dn": entry.dn}

    def _plan_groups(self, batch: Sequence[GroupEntry]) -> dict[str, str]:
        assert self.plan is not None
        ids: dict[str, str] = {}
        with self.store.read() as session:
            existing = self._existing(session, batch)
            for entry in batch:
                group, wanted = existing.get(entry.source_id), self._wanted(entry)
                if group is None:
                    ids[dn_key(entry.dn)] = f"new:{entry.source_id}"
                    self.outcome.counts.groups_added += 1
                    self.plan.group_adds.append({"name": wanted["display_name"], "dn": entry.dn})
                    continue
                ids[dn_key(entry.dn)] = group.id
                changed = {k: [getattr(group, k), v] for k, v in wanted.items() if getattr(group, k) != v}
                if changed:
                    self.outcome.counts.groups_updated += 1
                    self.plan.group_updates.append({"name": group.display_name, "changes": changed})
        return ids

    def _write_groups(self, uow: UnitOfWork, batch: Sequence[GroupEntry], *,
                      isolate: bool) -> tuple[dict[str, str], Counts, list[str]]:
        ids: dict[str, str] = {}
        counts, errors = Counts(), list[str]()
        existing = self._existing(uow.session, batch)
        if not isolate:
            # Changes group by group, then every new group in one create_many.
            new = [entry for entry in batch if entry.source_id not in existing]
            for entry in batch:
                if entry.source_id in existing:
                    ids[dn_key(entry.dn)] = self._one_group(uow, entry, existing[entry.source_id], counts)
            created = uow.groups.create_many([{**self._wanted(e), "source_id": e.source_id} for e in new])
            for entry, group_id in zip(new, created, strict=True):
                ids[dn_key(entry.dn)] = group_id
            counts.groups_added += len(created)
            return ids, counts, errors
        for entry in batch:
            try:
                with uow.session.begin_nested():
                    ids[dn_key(entry.dn)] = self._one_group(uow, entry, existing.get(entry.source_id), counts)
            except ENTRY_ERRORS as exc:
                counts.errors += 1
                reason = exc.message if isinstance(exc, ServiceError) else type(exc).__name__
                errors.append(f"group {entry.dn}: {reason}")
        return ids, counts, errors

    def _one_group(self, uow: UnitOfWork, entry: GroupEntry, group: Group | None, counts: Counts) -> str:
        wanted = self._wanted(entry)
        if group is None:
            group = uow.groups.create(wanted.pop("display_name"), source_id=entry.source_id, **wanted)
            counts.groups_added += 1
        elif any(getattr(group, k) != v for k, v in wanted.items()):
            uow.groups.update(group, **wanted)
            counts.groups_updated += 1
        return group.id

    # -- members ---------------------------------------------------------------

    def current_members(self, group_ids: Sequence[str]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        real = [g for g in group_ids if not g.startswith("new:")]
        with self.store.read() as session:
            users, groups = direct_members(session, real, SOURCE_ORIGIN)
        for gid in group_ids:  # groups not created yet have no members
            users.setdefault(gid, set())
            groups.setdefault(gid, set())
        return users, groups

    def sync_members(self, entries: Sequence[GroupEntry], group_ids: dict[str, str], user_ids: Mapping[str, str],
                     all_group_ids: dict[str, str], *, keep_users: set[str], keep_groups: set[str]) -> None:
        """Make each group's source members what the directory says. Members in
        ``keep_users``/``keep_groups`` (held back by the deletion guard) are not removed.
        Groups go ``GROUP_BATCH`` at a time (their stored members read, compared, written),
        so memory holds the members of a few hundred groups, not of all (1,000,000 at
        10,000 groups of 100); a dry run collects every change for its plan."""
        planned: list[MemberChange] = []
        batch: list[MemberChange] = []
        pending = 0
        for chunk in in_chunks(entries, GROUP_BATCH):
            for change in self._member_changes(chunk, group_ids, user_ids, all_group_ids, keep_users, keep_groups):
                if self.plan is not None:
                    planned.append(change)
                    continue
                batch.append(change)
                pending += change.size
                if pending >= MEMBER_BATCH:
                    self._apply_members(batch)
                    batch, pending = [], 0
        if self.plan is not None:
            self._plan_members(planned, user_ids, all_group_ids)
            return
        if batch:
            self._apply_members(batch)

    def _member_changes(self, entries: Sequence[GroupEntry], group_ids: dict[str, str],
                        user_ids: Mapping[str, str], all_group_ids: dict[str, str], keep_users: set[str],
                        keep_groups: set[str]) -> list[MemberChange]:
        """What differs between ``entries``' member DNs and their groups' stored members."""
        ids = [group_ids[dn_key(e.dn)] for e in entries if dn_key(e.dn) in group_ids]
        current_users, current_groups = self.current_members(ids)
        changes: list[MemberChange] = []
        for entry in entries:
            gid = group_ids.get(dn_key(entry.dn))
            if gid is None:
                continue
            want_users, want_groups = set(), set()
            unresolved = 0
            for member in entry.member_dns:
                key = dn_key(member)
                user_id = user_ids.get(key)  # one lookup (a flat IdMap hashes the key for each)
                if user_id is not None:
                    want_users.add(user_id)
                elif (child := all_group_ids.get(key)) is not None and child != gid:
                    want_groups.add(child)
                else:
                    unresolved += 1
            self.outcome.counts.unresolved_members += unresolved
            change = MemberChange(
                gid, (entry.name or entry.dn),
                add_users=want_users - current_users[gid],
                remove_users=current_users[gid] - want_users - keep_users,
                add_groups=want_groups - current_groups[gid],
                remove_groups=current_groups[gid] - want_groups - keep_groups,
            )
            if change.size:
                changes.append(change)
        return changes

    def _plan_members(self, changes: list[MemberChange], user_ids: Mapping[str, str],
                      group_ids: dict[str, str]) -> None:
        assert self.plan is not None
        labels = {v: k for k, v in {**user_ids, **group_ids}.items()}
        removed = {i for c in changes for i in c.remove_users | c.remove_groups}
        with self.store.read() as session:
            for chunk in in_chunks(sorted(removed)):
                for uid, name in session.execute(select(User.id, User.user_name).where(User.id.in_(chunk))):
                    labels[uid] = name
                for gid, name in session.execute(select(Group.id, Group.display_name).where(Group.id.in_(chunk))):
                    labels[gid] = name
        for c in changes:
            self.outcome.counts.memberships_added += len(c.add_users) + len(c.add_groups)
            self.outcome.counts.memberships_removed += len(c.remove_users) + len(c.remove_groups)
            self.plan.member_changes.append({
                "group": c.name,
                "added": sorted(labels.get(i, i) for i in c.add_users | c.add_groups),
                "removed": sorted(labels.get(i, i) for i in c.remove_users | c.remove_groups),
            })

    def _apply_members(self, batch: list[MemberChange]) -> None:
        try:
            with self.services.unit(self.actor) as uow:
                counts, errors = self._write_members(uow, batch, isolate=False)
        except ENTRY_ERRORS:
            with self.services.unit(self.actor) as uow:
                counts, errors = self._write_members(uow, batch, isolate=True)
        self.outcome.counts.add(counts)
        self.outcome.errors.extend(errors)
        self.progress("memberships", sum(c.size for c in batch))

    def _write_members(self, uow: UnitOfWork, batch: list[MemberChange], *,
                       isolate: bool) -> tuple[Counts, list[str]]:
        """The whole batch in one ``change_members_many``; redone group by group, each in
        a savepoint (``isolate``), when it was refused, so a bad group costs only itself."""
        counts, errors = Counts(), list[str]()
        if not isolate:
            deltas = [MemberDelta(c.group_id, c.add_users, c.remove_users, c.add_groups, c.remove_groups)
                      for c in batch]
            for added, removed in uow.groups.change_members_many(deltas):
                counts.memberships_added += len(added)
                counts.memberships_removed += len(removed)
            return counts, errors
        session = uow.session
        for change in batch:
            try:
                with session.begin_nested():
                    added, removed = self._change(uow, change)
            except ENTRY_ERRORS as exc:
                counts.errors += 1
                errors.append(f"members of group {change.name}: "
                              f"{exc.message if isinstance(exc, ServiceError) else type(exc).__name__}")
                continue
            counts.memberships_added += len(added)
            counts.memberships_removed += len(removed)
        return counts, errors

    @staticmethod
    def _change(uow: UnitOfWork, change: MemberChange) -> tuple[set[str], set[str]]:
        group = uow.groups.get(change.group_id)
        return uow.groups.change_members(group, add_users=change.add_users, remove_users=change.remove_users,
                                         add_groups=change.add_groups, remove_groups=change.remove_groups)

    # -- removal ---------------------------------------------------------------

    def remove(self, group_ids: Sequence[str]) -> None:
        for batch in in_chunks(group_ids, GROUP_BATCH):
            with self.services.unit(self.actor) as uow:
                for gid in batch:
                    group = uow.session.get(Group, gid)
                    if group is not None:
                        uow.groups.delete(group)
            self.progress("removals", len(batch))
