"""Groups and their members (users and nested groups), through the one write path.

Memberships carry an ``origin``: the same user can be in a group because the
source says so and because a customer rule put them there; removing one origin
leaves the other in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Unpack, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from bridge.names import identity_key, key_problem
from bridge.services import audit, validate
from bridge.services.actor import LDAP_PREFIX, LOCAL_SOURCE
from bridge.services.errors import (
    Conflict,
    GroupNameTaken,
    InvalidValue,
    NotFound,
    SourceConflict,
    VersionMismatch,
)
from bridge.services.fields import GroupChanges
from bridge.services.rows import BulkInsert, RowDefaults
from bridge.store.among import among, in_chunks
from bridge.store.locks import lock_name
from bridge.store.models import Group, GroupGroupMember, GroupKind, GroupUserMember, User

if TYPE_CHECKING:
    from bridge.services.unit import UnitOfWork

GROUP_FIELDS = ("display_name", "external_id", "source_id", "ldap_dn", "attributes", "kind", "customer_id")
SOURCE_ORIGIN = "source"
GROUP_NAME_LOCK_SPACE = 0x67726E6D  # "grnm": bridge.store.locks
_AUDITED_GROUP_FIELDS = tuple(sorted(GROUP_FIELDS))  # in the order ``audit.diff`` puts them
_GROUP_ROWS = RowDefaults(Group.__table__)  # type: ignore[arg-type]
_INSERT_GROUPS = BulkInsert(Group.__table__)  # type: ignore[arg-type]
_GROUPS = cast(Table, Group.__table__)
_INSERT_USER_MEMBERS = BulkInsert(GroupUserMember.__table__)  # type: ignore[arg-type]


@dataclass
class MemberDelta:
    """The members one group gains and loses, for ``change_members_many``."""

    group_id: str
    add_users: set[str] = field(default_factory=set)
    remove_users: set[str] = field(default_factory=set)
    add_groups: set[str] = field(default_factory=set)
    remove_groups: set[str] = field(default_factory=set)


def direct_members(session: Session, group_ids: Iterable[str],
                   origin: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The groups' member users of ``origin`` and their child groups, a few statements for many groups."""
    ids = set(group_ids)
    users: dict[str, set[str]] = {gid: set() for gid in ids}
    groups: dict[str, set[str]] = {gid: set() for gid in ids}
    for chunk in in_chunks(sorted(ids)):
        for gid, uid in session.execute(select(GroupUserMember.group_id, GroupUserMember.user_id).where(
                GroupUserMember.group_id.in_(chunk), GroupUserMember.origin == origin)):
            users[gid].add(uid)
        for gid, child in session.execute(select(GroupGroupMember.group_id, GroupGroupMember.child_group_id)
                                          .where(GroupGroupMember.group_id.in_(chunk))):
            groups[gid].add(child)
    return users, groups


def group_key(display_name: str) -> str:
    return identity_key(display_name)


def _snapshot(group: Group) -> dict[str, Any]:
    return {field: getattr(group, field) for field in GROUP_FIELDS}


@dataclass
class GroupService:
    uow: UnitOfWork

    def get(self, group_id: str) -> Group:
        group = self.uow.session.get(Group, group_id) if "\x00" not in group_id else None  # (no row holds one)
        if group is None:
            raise NotFound(f"no group with id {group_id}")
        return group

    def create(self, display_name: str, **fields: Any) -> Group:
        unknown = set(fields) - set(GROUP_FIELDS)
        if unknown:
            raise InvalidValue(f"unknown group fields: {', '.join(sorted(unknown))}")
        display_name = self._check_name(display_name)
        validate.fits_columns(Group.__table__, fields)
        self._ensure_name_free(self.uow.actor.source, display_name)
        if "kind" in fields:
            fields["kind"] = GroupKind(fields["kind"])
        now = self.uow.now()
        group = Group(display_name=display_name, display_name_key=group_key(display_name),
                      source=self.uow.actor.source, created_at=now, updated_at=now, **fields)
        self.uow.session.add(group)
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "group.create", "group", group.id, group.display_name,
                     audit.diff({}, _snapshot(group)))
        return group

    def create_many(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Create groups owned by the actor's source, all or none, and return their ids in
        order: the rules of ``create`` row by row (each row has ``display_name`` and other
        GROUP_FIELDS), but one INSERT of the groups and one of their audit rows (an LDAP
        sync's new groups) instead of an ORM object and a flush per group."""
        prepared: list[dict[str, Any]] = []
        now = self.uow.now()
        for fields in rows:
            fields = dict(fields)
            display_name = self._check_name(fields.pop("display_name", None))
            unknown = set(fields) - set(GROUP_FIELDS)
            if unknown:
                raise InvalidValue(f"unknown group fields: {', '.join(sorted(unknown))}")
            if "kind" in fields:
                fields["kind"] = GroupKind(fields["kind"])
            validate.fits_columns(Group.__table__, fields)
            row = _GROUP_ROWS.new_row()
            row.update(fields, display_name=display_name, display_name_key=group_key(display_name),
                       source=self.uow.actor.source, created_at=now, updated_at=now)
            prepared.append(row)
        if not prepared:
            return []
        session = self.uow.session
        session.flush()  # what the ORM holds pending goes first, in order
        _INSERT_GROUPS(session, prepared)
        audit.record_many(session, self.uow.actor, "group.create", "group", (
            (row["id"], row["display_name"], audit.created(row, _AUDITED_GROUP_FIELDS)) for row in prepared))
        return [row["id"] for row in prepared]

    def update(self, group: Group, *, expected_version: int | None = None, **given: Unpack[GroupChanges]) -> Group:
        changes: dict[str, Any] = dict(given)
        unknown = set(changes) - set(GROUP_FIELDS)
        if unknown:
            raise InvalidValue(f"unknown group fields: {', '.join(sorted(unknown))}")
        self._check_version(group, expected_version)
        if "display_name" in changes:
            changes["display_name"] = self._check_name(changes["display_name"])
        validate.fits_columns(Group.__table__, changes)
        changed = {k: v for k, v in changes.items() if getattr(group, k) != v}
        if not changed:
            return group
        self._check_ownership(group)
        if "display_name" in changed and group_key(changed["display_name"]) != group.display_name_key:
            self._ensure_name_free(group.source, changed["display_name"], group.id)
        before = _snapshot(group)
        for key, value in changed.items():
            setattr(group, key, value)
        group.display_name_key = group_key(group.display_name)
        self._touch(group)
        audit.record(self.uow.session, self.uow.actor, "group.update", "group", group.id, group.display_name,
                     audit.diff(before, _snapshot(group)))
        if {"display_name", "ldap_dn"} & set(changed):
            self.uow.changes.group(group.id)  # mapping rules match names and DNs
        if "display_name" in changed:  # renamed to or from the sales group: its reps' access follows
            members = self.user_member_ids(group, None)
            for name in {before["display_name"], group.display_name}:
                self.uow.customers.sales_group_changed(name, members)
        return group

    def delete(self, group: Group, *, expected_version: int | None = None, by_customer: bool = False) -> None:
        """Delete a group; a customer's rights-group goes only with its customer's remote access."""
        self._check_version(group, expected_version)
        self._check_ownership(group)
        if group.kind == GroupKind.customer_rights and not by_customer:
            raise Conflict(f"{group.display_name!r} is a customer's rights-group; it goes with the customer")
        audit.record(self.uow.session, self.uow.actor, "group.delete", "group", group.id, group.display_name,
                     audit.diff(_snapshot(group), {}))
        self.uow.changes.group(group.id)
        for child_id in self.group_member_ids(group):
            self.uow.changes.group(child_id)
        members, name = self.user_member_ids(group, None), group.display_name
        self.uow.access.touch(members)  # an access-type rule on the group no longer reaches them
        self.uow.session.delete(group)
        self.uow.session.flush()
        self.uow.customers.sales_group_changed(name, members)  # the sales group gone: its reps' access too

    # -- members ---------------------------------------------------------------

    def user_member_ids(self, group: Group, origin: str | None = SOURCE_ORIGIN) -> set[str]:
        query = select(GroupUserMember.user_id).where(GroupUserMember.group_id == group.id)
        if origin is not None:
            query = query.where(GroupUserMember.origin == origin)
        return set(self.uow.session.scalars(query))

    def group_member_ids(self, group: Group) -> set[str]:
        return set(self.uow.session.scalars(
            select(GroupGroupMember.child_group_id).where(GroupGroupMember.group_id == group.id)))

    def change_members(
        self,
        group: Group,
        *,
        add_users: Iterable[str] = (),
        remove_users: Iterable[str] = (),
        add_groups: Iterable[str] = (),
        remove_groups: Iterable[str] = (),
        origin: str = SOURCE_ORIGIN,
        check_ownership: bool = True,
        displays: Mapping[str, str | None] | None = None,
    ) -> tuple[set[str], set[str]]:
        """Add and remove members; returns the ids really added and removed. ``displays``
        gives the names the source calls members by (SCIM ``members.display``)."""
        if check_ownership:
            self._check_ownership(group)
        session = self.uow.session
        current_users = self.user_member_ids(group, origin)
        current_groups = self.group_member_ids(group)
        new_users = set(add_users) - current_users
        gone_users = set(remove_users) & current_users
        new_groups = set(add_groups) - current_groups
        gone_groups = set(remove_groups) & current_groups
        for user_id in new_users:
            member = session.get(User, user_id)
            if member is None:
                raise InvalidValue(f"no user with id {user_id}", field="members")
            if origin == SOURCE_ORIGIN:
                self._check_reference("user", user_id, member.source)
            session.add(GroupUserMember(group_id=group.id, user_id=user_id, origin=origin))
        for child_id in new_groups:
            child = session.get(Group, child_id)
            if child is None:
                raise InvalidValue(f"no group with id {child_id}", field="members")
            self._check_reference("group", child_id, child.source)
            if child_id == group.id or group.id in self._descendants(child_id):
                raise Conflict(f"adding group {child_id} to {group.display_name!r} would make a cycle")
            session.add(GroupGroupMember(group_id=group.id, child_group_id=child_id))
        for user_id in gone_users:
            session.delete(session.get(GroupUserMember, (group.id, user_id, origin)))
        for child_id in gone_groups:
            session.delete(session.get(GroupGroupMember, (group.id, child_id)))
        renamed = self._set_displays(group, origin, displays or {}, current_users | new_users - gone_users,
                                     current_groups | new_groups - gone_groups)
        added, removed = new_users | new_groups, gone_users | gone_groups
        for user_id in new_users | gone_users:
            self.uow.changes.user(user_id)  # the check caches of every replica drop these
        for child_id in new_groups | gone_groups:
            self.uow.changes.group(child_id)
        self.uow.customers.sales_group_changed(group.display_name, new_users | gone_users)
        if added or removed or renamed:
            self._touch(group)
            audit.record(session, self.uow.actor, "group.members", "group", group.id, group.display_name,
                         {"added": sorted(added), "removed": sorted(removed), "origin": origin,
                          **({"displays": sorted(renamed)} if renamed else {})})
        return added, removed

    def change_members_many(self, deltas: Sequence[MemberDelta], *,
                            origin: str = SOURCE_ORIGIN) -> list[tuple[set[str], set[str]]]:
        """``change_members`` for many groups in one go (an LDAP sync batch): the same
        checks, change log, version bump and one audit event per changed group, but the
        lookups, INSERTs and DELETEs as a few statements over plain rows instead of an
        ORM object and a flush per member. Returns (added, removed) per delta, in order.
        Nested-group additions stay one at a time: each cycle check must see the ones
        before it."""
        session = self.uow.session
        session.flush()  # what the ORM holds pending goes first, in order
        group_ids = [d.group_id for d in deltas]
        names: dict[str, str] = {}
        for chunk in in_chunks(sorted(set(group_ids))):
            for gid, source, name in session.execute(
                    select(Group.id, Group.source, Group.display_name).where(Group.id.in_(chunk))):
                self._check_ownership_of(source, name)
                names[gid] = name
        missing = [gid for gid in group_ids if gid not in names]
        if missing:
            raise NotFound(f"no group with id {missing[0]}")

        current_users, current_groups = direct_members(session, group_ids, origin)

        new_users = {d.group_id: set(d.add_users) - current_users[d.group_id] for d in deltas}
        gone_users = {d.group_id: set(d.remove_users) & current_users[d.group_id] for d in deltas}
        self._require(User, {uid for uids in new_users.values() for uid in uids}, "user",
                      referenced=origin == SOURCE_ORIGIN)
        self._require(Group, {gid for d in deltas for gid in set(d.add_groups) - current_groups[d.group_id]},
                      "group")

        results: list[tuple[set[str], set[str]]] = []
        group_table = cast(Table, GroupGroupMember.__table__)
        for delta in deltas:
            gid = delta.group_id
            new_groups = set(delta.add_groups) - current_groups[gid]
            gone_groups = set(delta.remove_groups) & current_groups[gid]
            for child_id in sorted(new_groups):
                if child_id == gid or gid in self._descendants(child_id):
                    raise Conflict(f"adding group {child_id} to {names[gid]!r} would make a cycle")
                session.execute(insert(group_table), {"group_id": gid, "child_group_id": child_id,
                                                      "display": None, "created_at": self.uow.now()})
            if gone_groups:
                session.execute(delete(group_table).where(group_table.c.group_id == gid,
                                                          among(group_table.c.child_group_id, gone_groups)))
            for child_id in new_groups | gone_groups:
                self.uow.changes.group(child_id)
            results.append((new_users[gid] | new_groups, gone_users[gid] | gone_groups))

        now = self.uow.now()
        user_table = cast(Table, GroupUserMember.__table__)
        added_rows = [{"group_id": gid, "user_id": uid, "origin": origin, "display": None, "created_at": now}
                      for gid, uids in new_users.items() for uid in uids]
        _INSERT_USER_MEMBERS(session, added_rows)
        removed_rows = [{"g": gid, "u": uid} for gid, uids in gone_users.items() for uid in uids]
        if removed_rows:
            session.execute(delete(user_table).where(
                user_table.c.group_id == bindparam("g"), user_table.c.user_id == bindparam("u"),
                user_table.c.origin == origin), removed_rows)
        for uids in (*new_users.values(), *gone_users.values()):
            for uid in uids:
                self.uow.changes.user(uid)  # the check caches of every replica drop these

        changed = [(d.group_id, added, removed) for d, (added, removed) in zip(deltas, results, strict=True)
                   if added or removed]
        if changed:
            session.execute(update(_GROUPS).where(_GROUPS.c.id == bindparam("gid")).values(
                updated_at=now, version=_GROUPS.c.version + 1), [{"gid": gid} for gid, _, _ in changed])
            audit.record_many(session, self.uow.actor, "group.members", "group", (
                (gid, names[gid], {"added": sorted(added), "removed": sorted(removed), "origin": origin})
                for gid, added, removed in changed))
        self._forget_loaded({gid for gid, _, _ in changed})
        for gid in {d.group_id for d in deltas}:
            self.uow.customers.sales_group_changed(names[gid], new_users[gid] | gone_users[gid])
        return results

    def _require(self, model: type[User | Group], ids: set[str], what: str, *,
                 referenced: bool = True) -> None:
        """InvalidValue naming the first of ``ids`` that is no row of ``model``; each one
        must be the actor's to reference (``_check_reference``) when ``referenced``."""
        found: dict[str, str] = {}
        table = cast(Table, model.__table__)
        connection = self.uow.session.connection()  # plain rows: 100,000 members of a bulk load
        for chunk in in_chunks(sorted(ids)):
            found.update(connection.execute(select(table.c.id, table.c.source).where(table.c.id.in_(chunk))).all())
        missing = sorted(ids - set(found))
        if missing:
            raise InvalidValue(f"no {what} with id {missing[0]}", field="members")
        if referenced:
            for member_id in sorted(found):
                self._check_reference(what, member_id, found[member_id])

    def _check_reference(self, what: str, member_id: str, member_source: str) -> None:
        """Memberships respect ownership: a source puts into its groups only the users and
        groups it owns or that an ownership rule lets it take over, so no mapping rule on
        its group names reaches another source's users. The local operator's groups may hold
        anyone (the portal's own decisions). The customer rules' memberships have origins of
        their own and are not references of a source."""
        actor_source = self.uow.actor.source
        if actor_source == LOCAL_SOURCE or member_source == actor_source or self.uow.may_take_over(member_source):
            return
        raise SourceConflict(f"{what} {member_id} is not one of {actor_source!r}'s own; a source's groups "
                             "hold only its own users and groups (or those an ownership rule lets it take over)")

    def _forget_loaded(self, group_ids: set[str]) -> None:
        """Groups written by plain statements, and their member rows, may sit in the
        session as ORM objects: expire those so that nothing reads or flushes a stale copy."""
        session = self.uow.session
        for obj in list(session.identity_map.values()):
            if (isinstance(obj, Group) and obj.id in group_ids
                    or isinstance(obj, (GroupUserMember, GroupGroupMember)) and obj.group_id in group_ids):
                session.expire(obj)

    def _set_displays(self, group: Group, origin: str, displays: Mapping[str, str | None],
                      users: set[str], groups: set[str]) -> set[str]:
        """Record the given member displays; the ids whose display changed."""
        session, changed = self.uow.session, set()
        session.flush()
        for member_id, display in displays.items():
            row: GroupUserMember | GroupGroupMember | None
            if member_id in users:
                row = session.get(GroupUserMember, (group.id, member_id, origin))
            elif member_id in groups:
                row = session.get(GroupGroupMember, (group.id, member_id))
            else:
                continue
            if row is not None and row.display != display:
                row.display = display
                changed.add(member_id)
        return changed

    def set_members(self, group: Group, user_ids: Iterable[str], group_ids: Iterable[str] = (),
                    origin: str = SOURCE_ORIGIN,
                    displays: Mapping[str, str | None] | None = None) -> tuple[set[str], set[str]]:
        """Make the members of this origin exactly these users and groups. A user who is a
        member through another origin only (a customer rule's) and is listed again (a SCIM
        GET body PUT back shows every member) stays that origin's, not this one's: a list
        read from the group cannot make the portal's rule memberships a source's own."""
        own = self.user_member_ids(group, origin)
        others = self.user_member_ids(group, None) - own
        user_ids, group_ids = set(user_ids) - others, set(group_ids)
        return self.change_members(
            group,
            add_users=user_ids,
            remove_users=own - user_ids,
            add_groups=group_ids,
            remove_groups=self.group_member_ids(group) - group_ids,
            origin=origin,
            displays=displays,
        )

    # -- helpers ---------------------------------------------------------------

    def _descendants(self, group_id: str) -> set[str]:
        """Every group nested (transitively) inside ``group_id``."""
        seen: set[str] = set()
        frontier = {group_id}
        while frontier:
            children = set(self.uow.session.scalars(
                select(GroupGroupMember.child_group_id).where(among(GroupGroupMember.group_id, frontier))))
            frontier = children - seen
            seen |= children
        return seen

    def _check_name(self, display_name: Any) -> str:
        if not isinstance(display_name, str) or not display_name.strip():
            raise InvalidValue("displayName is required", field="display_name")
        problem = key_problem(display_name, "displayName")
        if problem is not None:
            raise InvalidValue(problem, field="display_name")
        if len(display_name) > 256:
            raise InvalidValue("displayName is longer than 256 characters", field="display_name")
        return display_name.strip()

    def _ensure_name_free(self, source: str, display_name: str, group_id: str | None = None) -> None:
        """A source's groups have distinct displayNames (by identity key, bridge.names), because mapping
        rules and IdPs (Entra's ``displayName eq`` lookup) name a group by it. LDAP sources
        are exempt: a directory may hold two groups of one cn in different subtrees, and its
        rules can tell them apart by DN. A lock on the name serialises two creations."""
        if source.startswith(LDAP_PREFIX):
            return
        key = group_key(display_name)
        lock_name(self.uow.session, GROUP_NAME_LOCK_SPACE, f"{source}\x00{key}")
        clash = self.uow.session.scalar(select(Group.id).where(
            Group.source == source, Group.display_name_key == key, Group.id != (group_id or "")).limit(1))
        if clash is not None:
            raise GroupNameTaken(f"source {source!r} has a group named {display_name!r} already (names equal "
                                 "but for case, width, spacing or invisible characters are the same)",
                                 field="display_name")

    def _check_version(self, group: Group, expected_version: int | None) -> None:
        if expected_version is not None and expected_version != group.version:
            raise VersionMismatch(f"group {group.display_name} is at version {group.version}, not {expected_version}")

    def _check_ownership(self, group: Group) -> None:
        self._check_ownership_of(group.source, group.display_name)

    def _check_ownership_of(self, source: str, display_name: str) -> None:
        if source == self.uow.actor.source or self.uow.may_take_over(source):
            return
        raise SourceConflict(
            f"group {display_name!r} belongs to source {source!r}; "
            f"{self.uow.actor.source!r} may not change it without an ownership rule"
        )

    def _touch(self, group: Group) -> None:
        """A change of the group or its members gives it a new version (and ETag)."""
        group.updated_at = self.uow.now()
        self.uow.session.flush()
