"""Who holds a role: the users a role reaches through their grants or their groups'
(grants, group rules, nesting), as the authorizer sees them, as one SQL condition for
a user search (the admin API's ``GET /users?role=``; roles from attribute rules are not
searched), and who may hold a right at all (the candidates ``check`` decides for "who
may do R at S")."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import ColumnElement, false, or_, select

from bridge.mapping.loader import load_groups, load_model, snapshot
from bridge.mapping.model import GroupInfo
from bridge.mapping.rules import CompiledRules
from bridge.store.among import among
from bridge.store.db import Store
from bridge.store.models import AccessType, Grant, GroupUserMember, User, UserRight

CHUNK = 5000  # ids per statement: far below PostgreSQL's 65,535 parameters


def users_holding_role(store: Store, rules: CompiledRules, role: str) -> ColumnElement[bool]:
    """A condition on ``User`` true for the users holding ``role``: directly, or through a
    group that holds it or is nested in one that does (walked once, downwards)."""
    with snapshot(store) as conn:
        model = load_model(conn)
        role_id = model.role_ids.get(role)
        if role_id is None:
            return false()
        groups = load_groups(conn, model, rules)
    return _holding({role_id}, groups)


def right_candidates(store: Store, rules: CompiledRules, right: str) -> list[str] | None:
    """The ids, sorted, of every user who may hold ``right`` somewhere (the candidates of
    "who may do R at S", which check then decides one by one): admins, the holders of a
    role that includes it (their own grants, their groups', group rules, nesting), and its
    individual holders. None when a rule on users' attributes (or every user) gives such a
    role: then anyone may. Groups are sent in chunks (a directory may have more holding
    groups than a statement may carry parameters)."""
    with snapshot(store) as conn:
        model = load_model(conn)
        role_ids = {rid for rid, rights in model.closure.items() if right in rights}
        if any(rule.role is not None and model.role_ids.get(rule.role) in role_ids for rule in rules.attribute_rules):
            return None
        found: set[str] = set(conn.scalars(select(User.id).where(User.access_type == AccessType.admin)))
        found.update(conn.scalars(select(UserRight.user_id).where(UserRight.right_name == right)))
        if role_ids:
            found.update(conn.scalars(select(Grant.user_id).where(Grant.role_id.in_(sorted(role_ids)),
                                                                  Grant.user_id.is_not(None))))
            holding = sorted(_holding_groups(role_ids, load_groups(conn, model, rules)))
            for start in range(0, len(holding), CHUNK):
                found.update(conn.scalars(select(GroupUserMember.user_id).where(
                    GroupUserMember.group_id.in_(holding[start:start + CHUNK]))))
    return sorted(str(user_id) for user_id in found if user_id is not None)


def _holding_groups(role_ids: set[str], groups: dict[str, GroupInfo]) -> set[str]:
    """The groups holding one of ``role_ids``, and every group nested in one of them."""
    children: dict[str, list[str]] = defaultdict(list)
    for gid, info in groups.items():
        for parent in info.parents:
            children[parent].append(gid)
    pending = [gid for gid, info in groups.items() if any(h.role_id in role_ids for h in info.holdings)]
    holding: set[str] = set()
    while pending:
        gid = pending.pop()
        if gid not in holding:
            holding.add(gid)
            pending.extend(children[gid])
    return holding


def _holding(role_ids: set[str], groups: dict[str, GroupInfo]) -> ColumnElement[bool]:
    """The condition; the holding groups go as one parameter (bridge.store.among): a
    directory may have more of them than a statement may carry parameters."""
    direct = select(Grant.user_id).where(Grant.role_id.in_(sorted(role_ids)), Grant.user_id.is_not(None))
    holding = sorted(_holding_groups(role_ids, groups))
    via_groups = select(GroupUserMember.user_id).where(among(GroupUserMember.group_id, holding))
    return or_(User.id.in_(direct), User.id.in_(via_groups))
