"""Which groups a user is in: directly, and through nested groups.

A membership is direct when a row of ``group_user_members`` says so, whatever
put it there (a SCIM client, an LDAP sync, a customer rule, a sales
assignment); it is indirect when the user is directly in a group that is a
member, at any depth, of the other one. The nesting is walked in SQL with one
recursive query, so the groups of a whole page of users cost a fixed number of
statements however deep the nesting is. The store refuses nesting cycles
(bridge.services.groups), and the walk uses UNION, so it ends even on data
written before that check existed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CTE, Select, exists, literal, select
from sqlalchemy.orm import Session, aliased

from bridge.store.models import Group, GroupGroupMember, GroupUserMember

DIRECT, INDIRECT = "direct", "indirect"
# user ids per ``IN (...)`` (well under SQLite's variable limit)
ID_CHUNK = 900


@dataclass(frozen=True)
class Membership:
    """One group a user is in, as SCIM's ``groups`` attribute shows it."""

    group_id: str
    display_name: str
    type: str  # DIRECT or INDIRECT


def ancestors() -> CTE:
    """(child, ancestor): every group that ``child`` is nested in, at any depth."""
    edges = select(GroupGroupMember.child_group_id.label("child"),
                   GroupGroupMember.group_id.label("ancestor")).cte("group_ancestors", recursive=True)
    up = aliased(GroupGroupMember)
    step = select(edges.c.child, up.group_id).join(up, up.child_group_id == edges.c.ancestor)
    return edges.union(step)


def user_groups_rows(user_ids: Iterable[str] | None = None) -> Select[Any]:
    """Rows (user_id, group_id, display_name, type) of every membership, direct and indirect;
    for the users in ``user_ids`` only when given. A group the user is in directly is not
    listed again as indirect."""
    direct = select(GroupUserMember.user_id.label("user_id"), Group.id.label("group_id"),
                    Group.display_name.label("display_name"), literal(DIRECT).label("type")
                    ).join(Group, Group.id == GroupUserMember.group_id)
    tree = ancestors()
    inner = aliased(GroupUserMember)
    indirect = (
        select(GroupUserMember.user_id, Group.id, Group.display_name, literal(INDIRECT))
        .join(tree, tree.c.child == GroupUserMember.group_id)
        .join(Group, Group.id == tree.c.ancestor)
        .where(~exists().where(inner.user_id == GroupUserMember.user_id, inner.group_id == tree.c.ancestor))
    )
    if user_ids is not None:
        ids = list(user_ids)
        direct = direct.where(GroupUserMember.user_id.in_(ids))
        indirect = indirect.where(GroupUserMember.user_id.in_(ids))
    return select(direct.union(indirect).subquery())


def groups_of(session: Session, user_ids: Iterable[str]) -> dict[str, list[Membership]]:
    """Every user's groups, direct first, then by display name: one statement per ID_CHUNK users."""
    ordered = sorted(set(user_ids))
    found: dict[str, list[Membership]] = {uid: [] for uid in ordered}
    for start in range(0, len(ordered), ID_CHUNK):
        for user_id, group_id, name, kind in session.execute(user_groups_rows(ordered[start:start + ID_CHUNK])):
            found[user_id].append(Membership(group_id, name, kind))
    for memberships in found.values():
        memberships.sort(key=lambda m: (m.type != DIRECT, m.display_name.casefold(), m.group_id))
    return found


def users_in_group(group_id: str) -> Select[Any]:
    """The ids of the users in the group, directly or through a group nested in it."""
    tree = ancestors()
    nested = select(tree.c.child).where(tree.c.ancestor == group_id)
    return select(GroupUserMember.user_id).where(
        (GroupUserMember.group_id == group_id) | GroupUserMember.group_id.in_(nested))
