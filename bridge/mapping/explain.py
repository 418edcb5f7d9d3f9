"""Explain: every chain that gives a user a right at a scope.

A chain runs from the user through the groups (direct group first, then each
group it is nested in) to what grants the role (a stored grant or a mapping
rule), then the role and the included roles down to the one that lists the
right, and the node where it was granted (the asked node or an ancestor).
Individual rights and the admin access type are chains of their own; an admin access
type a mapping rule set runs through that rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.mapping.evaluate import ADMIN, API
from bridge.mapping.model import ROOT, Groups, Holding, Model, UserInfo


@dataclass(frozen=True)
class Link:
    type: str  # user | group | grant | rule | individual | access_type
    id: str | None
    name: str
    origins: tuple[str, ...] = ()  # for a group: why the user (or group) is in it

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "id": self.id, "name": self.name}
        if self.origins:
            out["origins"] = list(self.origins)
        return out


@dataclass(frozen=True)
class Chain:
    via: tuple[Link, ...]
    role: str | None
    includes: tuple[str, ...]  # included roles, from the granted role's first include to the holder
    scope: str

    def as_json(self) -> dict[str, Any]:
        return {"via": [link.as_json() for link in self.via], "role": self.role,
                "includes": list(self.includes), "scope": self.scope}

    def text(self) -> str:
        parts = []
        for link in self.via:
            if link.type == "user":
                parts.append(link.name)
            elif link.type == "group":
                why = f" ({', '.join(link.origins)})" if link.origins else ""
                parts.append(f"group {link.name!r}{why}")
            elif link.type == "rule":
                parts.append(f"mapping rule #{link.id} ({link.name})")
            elif link.type == "grant":
                parts.append(f"grant #{link.id} ({link.name})")
            elif link.type == "individual":
                parts.append("individual right")
            else:
                parts.append(f"access type {link.name}")
        if self.role:
            parts.append(f"role {self.role}")
            parts.extend(f"included role {name}" for name in self.includes)
        parts.append(f"at {self.scope}")
        return " -> ".join(parts)


def role_paths(model: Model, role_id: str, right: str, seen: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every path of included roles from ``role_id`` to a role that lists ``right``."""
    if right in model.role_rights.get(role_id, frozenset()):
        yield ()
    for included in model.role_includes.get(role_id, ()):
        if included in seen or included == role_id or included not in model.role_names:
            continue
        for rest in role_paths(model, included, right, seen + (role_id,)):
            yield (included,) + rest


#: chains one explain lists at most, and the steps (groups and role includes walked) it may
#: take: a diamond of nested groups has as many paths as 2 ** its depth
MAX_CHAINS, MAX_STEPS = 100, 20_000


class Chains(list[Chain]):
    """The chains found; ``truncated`` when there were more than an explain may walk."""

    truncated: bool = False


def explain(model: Model, user: UserInfo, groups: Groups, right: str, scope_id: str, *,
            interactive: bool = False, rules: Mapping[int, str] | None = None) -> Chains:
    """The chains that give ``user`` ``right`` at ``scope_id`` (at most MAX_CHAINS, found
    within MAX_STEPS; ``truncated`` says when some were left out); empty when it is denied."""
    chains = Chains()
    if not user.active or (interactive and user.access_type == API):
        return chains
    me = Link("user", user.id, user.user_name)
    if user.access_type == ADMIN:
        by_rule = () if user.access_rule is None else (
            Link("rule", str(user.access_rule), (rules or {}).get(user.access_rule, "mapping rule")),)
        chains.append(Chain((me, *by_rule, Link("access_type", None, ADMIN)), None, (), ROOT))
        return chains
    nodes = set(model.chain(scope_id))
    steps = 0

    def spent() -> bool:
        if len(chains) >= MAX_CHAINS or steps >= MAX_STEPS:
            chains.truncated = True
            return True
        return False

    def from_holdings(path: tuple[Link, ...], holdings: tuple[Holding, ...]) -> None:
        nonlocal steps
        for holding in holdings:
            if holding.scope_id not in nodes or holding.role_id not in model.role_names:
                continue
            if holding.rule is not None:
                how = Link("rule", str(holding.rule), (rules or {}).get(holding.rule, "mapping rule"))
            else:
                how = Link("grant", str(holding.grant_id), holding.origin)
            for includes in role_paths(model, holding.role_id, right):
                steps += 1
                if spent():
                    return
                chains.append(Chain(path + (how,), model.role_names[holding.role_id],
                                    tuple(model.role_names[r] for r in includes), holding.scope_id))

    def walk(group_id: str, origins: tuple[str, ...], path: tuple[Link, ...], seen: frozenset[str]) -> None:
        nonlocal steps
        steps += 1
        if spent():
            return
        info = groups(group_id)
        if info is None:
            return
        here = path + (Link("group", info.id, info.name, origins),)
        from_holdings(here, info.holdings)
        for parent in info.parents:
            if parent not in seen:
                walk(parent, ("nested",), here, seen | {parent})

    from_holdings((me,), user.holdings)
    for granted, node in user.individual:
        if granted == right and node in nodes:
            chains.append(Chain((me, Link("individual", None, right)), None, (), node))
    for group_id, origins in user.memberships:
        walk(group_id, origins, (me,), frozenset({group_id}))
    return chains
