"""Mapping rules from the config, compiled once and matched against groups and users.

A group rule ("members of group X, or of groups matching a pattern, get role R at
scope S") is matched against a group's display name and its LDAP DN,
case-insensitively, because directory names are. The pattern's named groups
fill the scope template (``pool:{pool}``).

An attribute rule ("attribute A = V") is matched against a user's attributes
(or a core field of the same name); it can set the user's kind and customer
(``{employeeNumber}`` filled from the user's attributes), and grant a role.
When several attribute rules set the same field, the first matching rule wins. A
multi-valued attribute matches when one of its values does; a value that is an object
(SCIM ``roles``, ``entitlements``) is compared by its ``value``, and ``roles.value``
names that part explicitly.

An all-users rule (``all_users = true``, narrowed by ``source`` and ``of_kind``) gives a
role to every user: "everyone is a basic user at the top".

An access-type rule (a group or attribute rule with ``access_type``) matches the same
way, but sets a stored field instead of granting: bridge.mapping.access decides,
bridge.services.access writes.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.config import MappingConfig, MappingRule
from bridge.names import identity_key

_FORMATTER = string.Formatter()


def source_matches(pattern: str, source: str) -> bool:
    """``*`` matches every source, ``scim`` every SCIM client, anything else itself."""
    if pattern == "*":
        return True
    if pattern == "scim":
        return source == "scim" or source.startswith("scim:")
    return pattern == source


def render(template: str, values: Mapping[str, Any]) -> str | None:
    """Fill ``{name}`` fields from ``values``; None when one is missing or empty."""
    out: list[str] = []
    for literal, field, _spec, _conv in _FORMATTER.parse(template):
        out.append(literal)
        if field is None:
            continue
        value = values.get(field)
        if isinstance(value, list):
            value = value[0] if value else None
        if value is None or str(value) == "":
            return None
        out.append(str(value))
    return "".join(out)


@dataclass(frozen=True)
class RuleGrant:
    """A role at a scope that rule number ``index`` gives."""

    index: int
    role: str
    scope: str


@dataclass(frozen=True)
class GroupRule:
    index: int
    source: str
    name_key: str | None
    pattern: re.Pattern[str] | None
    role: str | None
    scope: str
    access_type: str | None = None

    def matches(self, source: str, display_name: str, ldap_dn: str | None) -> dict[str, str] | None:
        """The pattern's named groups (empty for a name) when the group matches; else None."""
        if not source_matches(self.source, source):
            return None
        candidates = [display_name] + ([ldap_dn] if ldap_dn else [])
        for text in candidates:
            if self.name_key is not None:
                if identity_key(text) == self.name_key:
                    return {}
                continue
            assert self.pattern is not None
            found = self.pattern.search(text)
            if found:
                return {k: v for k, v in found.groupdict().items() if v is not None}
        return None

    def match(self, source: str, display_name: str, ldap_dn: str | None) -> RuleGrant | None:
        found = self.matches(source, display_name, ldap_dn)
        if found is None or self.role is None:
            return None
        scope = render(self.scope, found)
        return RuleGrant(self.index, self.role, scope) if scope else None


@dataclass(frozen=True)
class UserRuleEffect:
    """What a matching attribute rule says about a user."""

    index: int
    kind: str | None
    customer_number: str | None
    customer_missing: str | None  # the template when a field it needs is missing
    grant: RuleGrant | None
    customer_from_attributes: bool = False  # the number came from the user's attributes (a template)


def values_of(attributes: Mapping[str, Any], name: str) -> list[Any]:
    """The values an attribute rule compares: each value of a multi-valued attribute, an
    object's ``value`` (SCIM ``roles``, ``entitlements``), ``head.part`` for an object's part."""
    head, _, part = name.partition(".")
    value = attributes.get(name, attributes.get(head) if part else None)
    items = value if isinstance(value, list) else [value]
    if name in attributes:
        part = ""
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append(item.get(part or "value"))
        elif not part:
            out.append(item)
    return out


@dataclass(frozen=True)
class AttributeRule:
    index: int
    source: str
    attribute: str
    value_key: str
    role: str | None
    scope: str
    customer: str | None
    kind: str | None
    all_users: bool = False
    of_kind: str | None = None
    access_type: str | None = None

    def holds(self, source: str, attributes: Mapping[str, Any]) -> bool:
        """Whether the rule's source and attribute value match (all-users rules aside)."""
        return source_matches(self.source, source) and any(v is not None and str(v).strip().casefold() == self.value_key
                                                           for v in values_of(attributes, self.attribute))

    def match(self, source: str, attributes: Mapping[str, Any], kind: str | None = None) -> UserRuleEffect | None:
        if self.all_users:
            if not source_matches(self.source, source) or (self.of_kind is not None and kind != self.of_kind):
                return None
            grant = RuleGrant(self.index, self.role, self.scope) if self.role else None
            return UserRuleEffect(self.index, None, None, None, grant)
        if not self.holds(source, attributes):
            return None
        number = render(self.customer, attributes) if self.customer else None
        grant = None
        if self.role:
            scope = render(self.scope, attributes)
            grant = RuleGrant(self.index, self.role, scope) if scope else None
        missing = self.customer if self.customer and number is None else None
        return UserRuleEffect(self.index, self.kind, number, missing, grant,
                              customer_from_attributes=bool(self.customer) and "{" in str(self.customer))


@dataclass(frozen=True)
class CompiledRules:
    group_rules: tuple[GroupRule, ...]
    attribute_rules: tuple[AttributeRule, ...]
    #: the rules with ``access_type``, kept apart: they set a stored field (bridge.services.access)
    access_rules: tuple[GroupRule | AttributeRule, ...] = ()

    def for_group(self, source: str, display_name: str, ldap_dn: str | None) -> list[RuleGrant]:
        found = (rule.match(source, display_name, ldap_dn) for rule in self.group_rules)
        return [grant for grant in found if grant is not None]

    def for_user(self, source: str, attributes: Mapping[str, Any], kind: str | None = None) -> list[UserRuleEffect]:
        found = (rule.match(source, attributes, kind) for rule in self.attribute_rules)
        return [effect for effect in found if effect is not None]


def describe_rule(rule: MappingRule) -> str:
    """A rule as explain and errors show it: ``ldap:corp group_regex '^cn=pool-...'``."""
    if rule.all_users:
        kind = f" {rule.of_kind}" if rule.of_kind else ""
        return f"every{kind} user" + ("" if rule.source == "*" else f" of {rule.source}")
    if rule.attribute is not None:
        return f"{rule.source} attribute {rule.attribute}={rule.value!r}"
    if rule.group is not None:
        return f"{rule.source} group {rule.group!r}"
    return f"{rule.source} group_regex {rule.group_regex!r}"


def rule_text(config: MappingConfig, index: int) -> str:
    """Rule number ``index`` as explain shows it; just its number when the config has no such rule."""
    if 1 <= index <= len(config.rules):
        return f"mapping rule #{index} ({describe_rule(config.rules[index - 1])})"
    return f"mapping rule #{index}"


def compile_rule(index: int, rule: MappingRule) -> GroupRule | AttributeRule:
    if rule.all_users:
        return AttributeRule(index, rule.source, "", "", rule.role, rule.scope, None, None, all_users=True,
                             of_kind=rule.of_kind)
    if rule.attribute is not None:
        return AttributeRule(index, rule.source, rule.attribute, str(rule.value).strip().casefold(),
                             rule.role, rule.scope, rule.customer, rule.kind, access_type=rule.access_type)
    assert rule.role is not None or rule.access_type is not None, "checked by the config"
    pattern = re.compile(rule.group_regex, re.IGNORECASE) if rule.group_regex is not None else None
    name_key = identity_key(rule.group) if rule.group is not None else None
    return GroupRule(index, rule.source, name_key, pattern, rule.role, rule.scope, access_type=rule.access_type)


_compiled: dict[int, tuple[MappingConfig, CompiledRules]] = {}


def compiled_rules(config: MappingConfig) -> CompiledRules:
    """The rules of ``config``, compiled once per config object. Rules are numbered
    from 1 in the order of the config file, as explain shows them."""
    cached = _compiled.get(id(config))
    if cached is not None and cached[0] is config:
        return cached[1]
    rules = [compile_rule(i, r) for i, r in enumerate(config.rules, start=1)]
    granting = [r for r in rules if r.access_type is None]
    result = CompiledRules(
        tuple(r for r in granting if isinstance(r, GroupRule)),
        tuple(r for r in granting if isinstance(r, AttributeRule)),
        tuple(r for r in rules if r.access_type is not None),
    )
    _compiled[id(config)] = (config, result)
    return result
