"""Reading the authorization data from the store into the in-memory model.

Plain Core queries on one connection (no ORM objects: this runs on cache misses
of the portal's hot path). The model and all groups are read in one snapshot
(REPEATABLE READ on PostgreSQL; a SQLite read transaction is one already).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, or_, select

from bridge.mapping.model import GroupInfo, Holding, Model, UserInfo
from bridge.mapping.rules import CompiledRules
from bridge.services.users import user_name_key
from bridge.store.among import among
from bridge.store.db import Store
from bridge.store.models import (
    Grant,
    Group,
    GroupGroupMember,
    GroupUserMember,
    Right,
    Role,
    RoleInclude,
    RoleRight,
    ScopeNode,
    User,
    UserRight,
)


@contextmanager
def snapshot(store: Store) -> Iterator[Connection]:
    """A read-only connection whose queries all see the same committed state."""
    conn = store.engine.connect()
    try:
        if not store.is_sqlite:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn
    finally:
        conn.close()


def load_model(conn: Connection) -> Model:
    parents = {row.id: row.parent_id for row in conn.execute(select(ScopeNode.id, ScopeNode.parent_id))}
    role_names = {row.id: row.name for row in conn.execute(select(Role.id, Role.name))}
    role_rights: dict[str, set[str]] = defaultdict(set)
    for row in conn.execute(select(RoleRight.role_id, RoleRight.right_name)):
        role_rights[row.role_id].add(row.right_name)
    includes: dict[str, list[str]] = defaultdict(list)
    for row in conn.execute(select(RoleInclude.role_id, RoleInclude.included_role_id)):
        includes[row.role_id].append(row.included_role_id)
    rights = frozenset(conn.scalars(select(Right.name)))
    return Model(
        parents=parents,
        role_names=role_names,
        role_rights={rid: frozenset(r) for rid, r in role_rights.items()},
        role_includes={rid: tuple(sorted(i)) for rid, i in includes.items()},
        rights=rights,
    )


def rule_holdings(model: Model, rules: CompiledRules, source: str, name: str, dn: str | None) -> list[Holding]:
    """What the group rules give a group: only roles and nodes that exist."""
    out = []
    for grant in rules.for_group(source, name, dn):
        role_id = model.role_ids.get(grant.role)
        if role_id is not None and grant.scope in model.parents:
            out.append(Holding(role_id, grant.scope, rule=grant.index, origin="rule"))
    return out


def _group_infos(conn: Connection, model: Model, rules: CompiledRules,
                 group_ids: list[str] | None) -> dict[str, GroupInfo]:
    groups = select(Group.id, Group.display_name, Group.source, Group.ldap_dn)
    edges = select(GroupGroupMember.child_group_id, GroupGroupMember.group_id)
    grants = select(Grant.id, Grant.group_id, Grant.role_id, Grant.scope_id, Grant.origin).where(
        Grant.group_id.is_not(None))
    if group_ids is not None:
        groups = groups.where(among(Group.id, group_ids))
        edges = edges.where(among(GroupGroupMember.child_group_id, group_ids))
        grants = grants.where(among(Grant.group_id, group_ids))
    parents: dict[str, list[str]] = defaultdict(list)
    for edge in conn.execute(edges):
        parents[edge.child_group_id].append(edge.group_id)
    holdings: dict[str, list[Holding]] = defaultdict(list)
    for held in conn.execute(grants):
        holdings[held.group_id].append(Holding(held.role_id, held.scope_id, grant_id=held.id, origin=held.origin))
    out = {}
    for row in conn.execute(groups):
        mine = holdings.get(row.id, []) + rule_holdings(model, rules, row.source, row.display_name, row.ldap_dn)
        out[row.id] = GroupInfo(row.id, row.display_name, row.source, tuple(sorted(parents.get(row.id, ()))),
                                tuple(mine))
    return out


def load_groups(conn: Connection, model: Model, rules: CompiledRules) -> dict[str, GroupInfo]:
    return _group_infos(conn, model, rules, None)


def load_group(conn: Connection, model: Model, rules: CompiledRules, group_id: str) -> GroupInfo | None:
    return _group_infos(conn, model, rules, [group_id]).get(group_id)


def find_user_id(conn: Connection, ref: str) -> str | None:
    """A user's id from their id or userName (an id wins)."""
    rows = conn.execute(select(User.id, User.user_name_key).where(
        or_(User.id == ref, User.user_name_key == user_name_key(ref)))).all()
    for row in rows:
        if row.id == ref:
            return str(row.id)
    return str(rows[0].id) if rows else None


REFS_PER_QUERY = 400  # ids and keys of one look: two bound parameters a reference


def stored_refs(conn: Connection, refs: Iterable[str]) -> set[str]:
    """Which of ``refs`` (ids or userNames, as find_user_id reads them) name a stored user:
    one query per REFS_PER_QUERY references, so a bulk check naming a thousand users that
    do not exist costs a few queries, not a snapshot each."""
    found: set[str] = set()
    pending = list(dict.fromkeys(refs))
    for start in range(0, len(pending), REFS_PER_QUERY):
        chunk = pending[start:start + REFS_PER_QUERY]
        by_key: dict[str, list[str]] = defaultdict(list)
        for ref in chunk:
            by_key[user_name_key(ref)].append(ref)
        rows = conn.execute(select(User.id, User.user_name_key).where(
            or_(User.id.in_(chunk), User.user_name_key.in_(list(by_key))))).all()
        for row in rows:
            found.update(ref for ref in by_key.get(row.user_name_key, ()))
            found.add(str(row.id))
    return found & set(pending)


def load_user(conn: Connection, model: Model, rules: CompiledRules, user_id: str) -> UserInfo | None:
    row = conn.execute(select(User.id, User.user_name, User.active, User.access_type, User.source,
                              User.attributes, User.kind, User.access_type_rule, User.access_type_note)
                       .where(User.id == user_id)).first()
    if row is None:
        return None
    origins: dict[str, list[str]] = defaultdict(list)
    for m in conn.execute(select(GroupUserMember.group_id, GroupUserMember.origin)
                          .where(GroupUserMember.user_id == user_id)):
        origins[m.group_id].append(m.origin)
    holdings = [Holding(g.role_id, g.scope_id, grant_id=g.id, origin=g.origin) for g in conn.execute(
        select(Grant.id, Grant.role_id, Grant.scope_id, Grant.origin).where(Grant.user_id == user_id))]
    kind = row.kind.value if hasattr(row.kind, "value") else str(row.kind)
    for effect in rules.for_user(row.source, row.attributes or {}, kind):
        grant = effect.grant
        if grant is not None and grant.role in model.role_ids and grant.scope in model.parents:
            holdings.append(Holding(model.role_ids[grant.role], grant.scope, rule=grant.index, origin="rule"))
    individual = [(r.right_name, r.scope_id) for r in conn.execute(
        select(UserRight.right_name, UserRight.scope_id).where(UserRight.user_id == user_id))]
    access = row.access_type.value if hasattr(row.access_type, "value") else str(row.access_type)
    return UserInfo(
        id=row.id,
        user_name=row.user_name,
        active=bool(row.active),
        access_type=access,
        memberships=tuple(sorted((gid, tuple(sorted(o))) for gid, o in origins.items())),
        holdings=tuple(holdings),
        individual=tuple(sorted(individual)),
        access_rule=row.access_type_rule,
        access_note=row.access_type_note,
    )
