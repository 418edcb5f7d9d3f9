"""Who holds a role: the users a role reaches through their grants or their groups'
(grants, group rules, nesting), as the authorizer sees them, as one SQL condition for
a user search (the admin API's ``GET /users?role=``). Roles from attribute rules are
not searched."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import ColumnElement, false, or_, select

from bridge.mapping.loader import load_groups, load_model, snapshot
from bridge.mapping.rules import CompiledRules
from bridge.store.db import Store
from bridge.store.models import Grant, GroupUserMember, User


def users_holding_role(store: Store, rules: CompiledRules, role: str) -> ColumnElement[bool]:
    """A condition on ``User`` true for the users holding ``role``: directly, or through a
    group that holds it or is nested in one that does (walked once, downwards)."""
    with snapshot(store) as conn:
        model = load_model(conn)
        role_id = model.role_ids.get(role)
        if role_id is None:
            return false()
        groups = load_groups(conn, model, rules)
    children: dict[str, list[str]] = defaultdict(list)
    for gid, info in groups.items():
        for parent in info.parents:
            children[parent].append(gid)
    pending = [gid for gid, info in groups.items() if any(h.role_id == role_id for h in info.holdings)]
    holding: set[str] = set()
    while pending:
        gid = pending.pop()
        if gid not in holding:
            holding.add(gid)
            pending.extend(children[gid])
    direct = select(Grant.user_id).where(Grant.role_id == role_id, Grant.user_id.is_not(None))
    via_groups = select(GroupUserMember.user_id).where(GroupUserMember.group_id.in_(sorted(holding)))
    return or_(User.id.in_(direct), User.id.in_(via_groups))
