"""Which access type the access-type rules give a user, decided from what matches.

Pure: the service that writes it (bridge.services.access) and explain read the same
answer. Of several matching rules the most privileged access type wins (admin over
backend over api), and of those the lowest-numbered rule is the one named: a user in
both "PortalAdmins" and "ApiClients" is an admin, whatever order the file lists them
in. An admin rule is only applied to a user whose source may hold admins (the config:
``Config.may_hold_admins``); refused, the next best match decides, and the refusal is
kept so that explain and the audit log can say why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.mapping.rules import AttributeRule, CompiledRules

ADMIN = "admin"
RANK = {"api": 0, "backend": 1, ADMIN: 2}


@dataclass(frozen=True)
class AccessMatch:
    """Rule number ``index`` gives ``access_type``."""

    index: int
    access_type: str


@dataclass(frozen=True)
class AccessDecision:
    """``access_type`` None: no rule applies, the user's own value stands."""

    access_type: str | None
    rule: int | None
    refused: AccessMatch | None = None  # an admin rule not applied: the source may not hold admins


@dataclass(frozen=True)
class GroupRef:
    """What a group rule compares: the group's source, display name and DN."""

    source: str
    name: str
    dn: str | None


def attribute_matches(rules: CompiledRules, source: str, attributes: Mapping[str, Any]) -> list[AccessMatch]:
    """The access-type attribute rules that a user of ``source`` with ``attributes`` matches."""
    return [AccessMatch(r.index, r.access_type) for r in rules.access_rules
            if r.access_type is not None and isinstance(r, AttributeRule) and r.holds(source, attributes)]


def group_matches(rules: CompiledRules, group: GroupRef) -> list[AccessMatch]:
    """The access-type group rules that ``group`` itself matches."""
    return [AccessMatch(r.index, r.access_type) for r in rules.access_rules
            if r.access_type is not None and not isinstance(r, AttributeRule)
            and r.matches(group.source, group.name, group.dn) is not None]


def decide(found: Iterable[AccessMatch], may_hold_admins: bool) -> AccessDecision:
    """The winning match: the most privileged, then the lowest rule number."""
    ordered = sorted(set(found), key=lambda m: (-RANK[m.access_type], m.index))
    refused = None
    if ordered and ordered[0].access_type == ADMIN and not may_hold_admins:
        refused = ordered[0]
        ordered = [m for m in ordered if m.access_type != ADMIN]
    if not ordered:
        return AccessDecision(None, None, refused)
    return AccessDecision(ordered[0].access_type, ordered[0].index, refused)
