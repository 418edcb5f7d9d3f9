"""The naive evaluation: straight from the database, recursively, on every call.

No cache and no compilation: walk the scope node's ancestors, the user's groups
and the groups they are nested in, each grant's role and the roles it includes,
one query at a time. It is the baseline of bench/check_bench.py and an
independent oracle for the tests.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bridge.mapping.rules import CompiledRules
from bridge.names import identity_key
from bridge.store.models import (
    AccessType,
    Grant,
    Group,
    GroupGroupMember,
    GroupUserMember,
    Role,
    RoleInclude,
    RoleRight,
    ScopeNode,
    User,
    UserRight,
)


def _role_has(session: Session, role_id: str, right: str, seen: frozenset[str] = frozenset()) -> bool:
    if session.get(RoleRight, (role_id, right)) is not None:
        return True
    for included in session.scalars(select(RoleInclude.included_role_id).where(RoleInclude.role_id == role_id)):
        if included not in seen and _role_has(session, included, right, seen | {role_id}):
            return True
    return False


def _ancestors(session: Session, scope_id: str) -> list[str]:
    out: list[str] = []
    node = session.get(ScopeNode, scope_id)
    while node is not None and node.id not in out:
        out.append(node.id)
        node = session.get(ScopeNode, node.parent_id) if node.parent_id else None
    return out


def _groups(session: Session, user_id: str) -> set[str]:
    found: set[str] = set()
    frontier = set(session.scalars(select(GroupUserMember.group_id).where(GroupUserMember.user_id == user_id)))
    while frontier:
        found |= frontier
        frontier = set(session.scalars(select(GroupGroupMember.group_id)
                                       .where(GroupGroupMember.child_group_id.in_(frontier)))) - found
    return found


def naive_check(session: Session, rules: CompiledRules, user_ref: str, right: str, scope_id: str) -> bool:
    user = session.scalar(select(User).where(or_(User.id == user_ref, User.user_name_key == identity_key(user_ref))))
    if user is None or not user.active:
        return False
    if user.access_type == AccessType.admin:
        return True
    nodes = _ancestors(session, scope_id)
    if session.scalar(select(UserRight).where(UserRight.user_id == user.id, UserRight.right_name == right,
                                               UserRight.scope_id.in_(nodes))) is not None:
        return True
    groups = _groups(session, user.id)
    grants = session.scalars(select(Grant).where(
        Grant.scope_id.in_(nodes), or_(Grant.user_id == user.id, Grant.group_id.in_(groups))))
    if any(_role_has(session, grant.role_id, right) for grant in grants):
        return True
    ruled: list[tuple[str, str]] = []
    for group in session.scalars(select(Group).where(Group.id.in_(groups))):
        ruled += [(g.role, g.scope) for g in rules.for_group(group.source, group.display_name, group.ldap_dn)]
    for effect in rules.for_user(user.source, user.attributes or {}, user.kind.value):
        if effect.grant is not None:
            ruled.append((effect.grant.role, effect.grant.scope))
    for role_name, scope in ruled:
        role_id = session.scalar(select(Role.id).where(Role.name == role_name))
        if scope in nodes and role_id is not None and _role_has(session, role_id, right):
            return True
    return False
