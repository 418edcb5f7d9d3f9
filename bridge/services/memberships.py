"""Which groups a user is in: directly, and through nested groups.

A membership is direct when a row of ``group_user_members`` says so, whatever
put it there (a SCIM client, an LDAP sync, a customer rule, a sales
assignment); it is indirect when the user is directly in a group that is a
member, at any depth up to MAX_NESTING, of the other one.

The nesting is walked in SQL with recursive queries that start where the
question starts: up from the groups of the users of one page (what a page of
SCIM users shows), down from one group (``groups.value eq ID``). So their cost
follows what the page's users or that group reach, not how many groups the
store holds: one client's deep chain of groups slows only the answers that
touch it. Only a filter on other sub-attributes of ``groups`` walks the whole
nesting (``ancestors``). Every walk stops at MAX_NESTING levels and uses
UNION, so it ends on any data, a cycle written before the store refused
cycles (bridge.services.groups) included.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CTE, Connection, Select, bindparam, exists, func, literal, select
from sqlalchemy.orm import Session, aliased

from bridge.store.among import in_chunks
from bridge.store.models import Group, GroupGroupMember, GroupUserMember

DIRECT, INDIRECT = "direct", "indirect"
# How many levels of nesting are followed. Directories nest a handful deep; past this a
# group is not shown as an indirect one (and a hostile chain costs no more than this).
MAX_NESTING = 16


@dataclass(frozen=True)
class Membership:
    """One group a user is in, as SCIM's ``groups`` attribute shows it."""

    group_id: str
    display_name: str
    type: str  # DIRECT or INDIRECT


def ancestors() -> CTE:
    """(child, ancestor): every group that ``child`` is nested in, up to MAX_NESTING levels.
    The whole store's nesting: for filters that cannot start from one group."""
    edges = select(GroupGroupMember.child_group_id.label("child"), GroupGroupMember.group_id.label("ancestor"),
                   literal(1).label("depth")).cte("group_ancestors", recursive=True)
    up = aliased(GroupGroupMember)
    step = (select(edges.c.child, up.group_id, edges.c.depth + 1)
            .join(up, up.child_group_id == edges.c.ancestor).where(edges.c.depth < MAX_NESTING))
    return edges.union(step)


def user_groups_rows() -> Select[Any]:
    """Rows (user_id, group_id, display_name, type) of every membership of every user, direct
    and indirect (for filters); a group the user is in directly is not listed as indirect."""
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
    return select(direct.union(indirect).subquery())


@functools.cache
def _groups_of_users() -> Select[Any]:
    """(user_id, group_id, display_name, depth): the walk up from the own groups of the users
    bound to ``user_ids`` (an expanding parameter). Built once: building the statement costs
    more than running it for a page of users, and SQLAlchemy caches its compiled form."""
    walk = (select(GroupUserMember.user_id.label("user_id"), GroupUserMember.group_id.label("group_id"),
                   literal(0).label("depth"))
            .where(GroupUserMember.user_id.in_(bindparam("user_ids", expanding=True)))
            .cte("user_groups", recursive=True))
    up = aliased(GroupGroupMember)
    walk = walk.union(select(walk.c.user_id, up.group_id, walk.c.depth + 1)
                      .join(up, up.child_group_id == walk.c.group_id).where(walk.c.depth < MAX_NESTING))
    return (select(walk.c.user_id, walk.c.group_id, Group.display_name, func.min(walk.c.depth))
            .join(Group, Group.id == walk.c.group_id)
            .group_by(walk.c.user_id, walk.c.group_id, Group.display_name))


def groups_of(session: Session | Connection, user_ids: Iterable[str]) -> dict[str, list[Membership]]:
    """Every user's groups, direct first, then by display name: one statement per IN_CHUNK users."""
    ordered = sorted(set(user_ids))
    found: dict[str, list[Membership]] = {uid: [] for uid in ordered}
    for chunk in in_chunks(ordered):
        for user_id, group_id, name, depth in session.execute(_groups_of_users(), {"user_ids": chunk}):
            found[user_id].append(Membership(group_id, name, DIRECT if depth == 0 else INDIRECT))
    for memberships in found.values():
        memberships.sort(key=lambda m: (m.type != DIRECT, m.display_name.casefold(), m.group_id))
    return found


def users_in_group(group_id: str) -> Select[Any]:
    """The ids of the users in the group, directly or through a group nested in it."""
    walk = select(literal(group_id).label("group_id"), literal(0).label("depth")).cte("group_walk", recursive=True)
    down = aliased(GroupGroupMember)
    walk = walk.union(select(down.child_group_id, walk.c.depth + 1)
                      .join(down, down.group_id == walk.c.group_id).where(walk.c.depth < MAX_NESTING))
    return select(GroupUserMember.user_id).where(GroupUserMember.group_id.in_(select(walk.c.group_id)))
