"""The authorizer: ``check``, ``rights`` and ``explain`` for the portal, one per process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge.config import Config, MappingRule
from bridge.mapping.cache import AuthzCache, Entry
from bridge.mapping.evaluate import allowed, effective_rights
from bridge.mapping.explain import Chain, explain
from bridge.mapping.model import GroupInfo, Model
from bridge.mapping.rules import compiled_rules
from bridge.services.errors import NotFound
from bridge.store.db import Store

if TYPE_CHECKING:
    from bridge.runtime import Runtime



def describe_rule(rule: MappingRule) -> str:
    """A rule as explain shows it: ``ldap:corp group_regex '^cn=pool-...'``."""
    if rule.all_users:
        kind = f" {rule.of_kind}" if rule.of_kind else ""
        return f"every{kind} user" + ("" if rule.source == "*" else f" of {rule.source}")
    if rule.attribute is not None:
        return f"{rule.source} attribute {rule.attribute}={rule.value!r}"
    if rule.group is not None:
        return f"{rule.source} group {rule.group!r}"
    return f"{rule.source} group_regex {rule.group_regex!r}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    user_id: str
    user_name: str
    because: list[Chain] | None = None
    active: bool = True
    access_type: str = "backend"


class Authorizer:
    def __init__(self, store: Store, config: Config, max_users: int | None = None):
        self.rules = compiled_rules(config.mapping)
        self.rule_text = {i: describe_rule(r) for i, r in enumerate(config.mapping.rules, start=1)}
        self.cache = AuthzCache(store, self.rules, max_users or config.mapping.cache_users)

    def _resolve(self, user: str, scope: str) -> tuple[Model, Entry]:
        self.cache.sync()
        found = self.cache.entry(user)
        if found is None:
            raise NotFound(f"no user {user!r} (by id or userName)", field="user")
        model, entry = found
        if scope not in model.parents:
            raise NotFound(f"no scope node {scope!r}", field="scope")
        return model, entry

    def check(self, user: str, right: str, scope: str, *, explain: bool = False,
              interactive: bool = False) -> Decision:
        """May ``user`` (id or userName) exercise ``right`` at ``scope``?"""
        model, entry = self._resolve(user, scope)
        ok = allowed(model, entry.compiled, right, scope, interactive=interactive)
        chains = self._explain(model, entry, right, scope, interactive) if explain else None
        return Decision(ok, entry.info.id, entry.info.user_name, chains, entry.info.active, entry.info.access_type)

    def rights(self, user: str, scope: str) -> tuple[Decision, frozenset[str]]:
        """Every right the user has at ``scope``."""
        model, entry = self._resolve(user, scope)
        found = effective_rights(model, entry.compiled, scope)
        return Decision(bool(found), entry.info.id, entry.info.user_name), found

    def _explain(self, model: Model, entry: Entry, right: str, scope: str, interactive: bool) -> list[Chain]:
        groups = {g.id: g for g in entry.groups}

        def group(group_id: str) -> GroupInfo | None:
            return groups.get(group_id)

        return explain(model, entry.info, group, right, scope, interactive=interactive,
                       rules=self.rule_text)


def authorizer(rt: Runtime) -> Authorizer:
    """The runtime's authorizer (``Runtime.authorizer``)."""
    return rt.authorizer