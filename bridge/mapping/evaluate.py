"""Effective rights: the union over a user's own holdings and those of every group
they are in (nested groups included), at the node and every ancestor.

Compiling a user folds all of that into "rights granted at node X"; ``check``
then only walks the few nodes from the asked scope up to the root. Lower levels
extend, never restrict: there is nothing that could take a right away.
"""

from __future__ import annotations

from collections import defaultdict

from bridge.mapping.model import ROOT, Compiled, Groups, Model, UserInfo

ADMIN, API = "admin", "api"


def group_closure(user: UserInfo, groups: Groups) -> frozenset[str]:
    """Every group the user is in, directly or through nested groups."""
    seen: set[str] = set()
    frontier = [gid for gid, _ in user.memberships]
    while frontier:
        gid = frontier.pop()
        if gid in seen:
            continue
        info = groups(gid)
        if info is None:
            continue
        seen.add(gid)
        frontier.extend(p for p in info.parents if p not in seen)
    return frozenset(seen)


def compile_user(model: Model, user: UserInfo, groups: Groups) -> Compiled:
    closure = group_closure(user, groups)
    found: dict[str, set[str]] = defaultdict(set)
    holdings = list(user.holdings)
    for gid in closure:
        info = groups(gid)
        if info is not None:
            holdings.extend(info.holdings)
    for holding in holdings:
        if holding.scope_id in model.parents and holding.role_id in model.closure:
            found[holding.scope_id] |= model.closure[holding.role_id]
    for right, scope_id in user.individual:
        if scope_id in model.parents:
            found[scope_id].add(right)
    return Compiled(
        user_id=user.id,
        user_name=user.user_name,
        active=user.active,
        access_type=user.access_type,
        rights_at={node: frozenset(rights) for node, rights in found.items() if rights},
        groups=closure,
    )


def allowed(model: Model, user: Compiled, right: str, scope_id: str, *, interactive: bool = False) -> bool:
    """May the user exercise ``right`` at ``scope_id``? Inactive users may nothing;
    admins may everything; API users may nothing interactively."""
    if not user.active or (interactive and user.access_type == API):
        return False
    if user.access_type == ADMIN:
        return True
    rights_at = user.rights_at
    for node in model.chain(scope_id):
        rights = rights_at.get(node)
        if rights is not None and right in rights:
            return True
    return False


def effective_rights(model: Model, user: Compiled, scope_id: str) -> frozenset[str]:
    """Every right the user has at ``scope_id``."""
    if not user.active:
        return frozenset()
    if user.access_type == ADMIN:
        return model.rights
    out: set[str] = set()
    for node in model.chain(scope_id):
        out |= user.rights_at.get(node, frozenset())
    return frozenset(out)


def granted_at(model: Model, user: Compiled, right: str, *, interactive: bool = False) -> tuple[str, ...]:
    """The nodes where ``right`` is granted to the user (it then holds there and below),
    highest first; an admin's is the root."""
    if not user.active or (interactive and user.access_type == API):
        return ()
    if user.access_type == ADMIN:
        return (ROOT,)
    nodes = {node for node, rights in user.rights_at.items() if right in rights and node in model.parents}
    # a node below another granted node adds nothing (a set: thousands of pools stay linear)
    top = [node for node in nodes if not any(up in nodes for up in model.chain(node)[1:])]
    return tuple(sorted(top, key=lambda node: (len(model.chain(node)), node)))


def scopes_allowed(model: Model, granted: tuple[str, ...]) -> tuple[str, ...]:
    """Every node where a right granted at ``granted`` (see granted_at) holds: those and below."""
    seen: dict[str, None] = {}
    for node in granted:
        seen.update(dict.fromkeys(model.descendants(node)))
    return tuple(seen)
