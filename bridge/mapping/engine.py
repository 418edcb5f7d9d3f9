"""The authorizer: ``check``, ``rights`` and ``explain`` for the portal, one per process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.config import Config
from bridge.mapping.cache import AuthzCache, Entry
from bridge.mapping.evaluate import allowed, effective_rights
from bridge.mapping.explain import Chain, explain
from bridge.mapping.model import GroupInfo, Model
from bridge.mapping.rules import compiled_rules, describe_rule
from bridge.services.errors import NotFound
from bridge.store.db import Store

if TYPE_CHECKING:
    from bridge.runtime import Runtime



@dataclass(frozen=True)
class Decision:
    allowed: bool
    user_id: str
    user_name: str
    because: list[Chain] | None = None
    active: bool = True
    access_type: str = "backend"
    access_rule: int | None = None  # the mapping rule that set the access type
    access_rule_text: str | None = None
    access_note: str | None = None  # why the access type is not what the rules say

    def access_json(self) -> dict[str, Any]:
        """The access type, what set it and what the rules could not do: for explain."""
        rule = None if self.access_rule is None else {"id": str(self.access_rule), "name": self.access_rule_text}
        return {"value": self.access_type, "rule": rule, "note": self.access_note}

    def access_text(self) -> str | None:
        """The same, in a sentence, when a rule is involved (else the access type is the user's own)."""
        if self.access_rule is None and self.access_note is None:
            return None
        by = (f", set by mapping rule #{self.access_rule} ({self.access_rule_text})"
              if self.access_rule is not None else "")
        return f"Access type {self.access_type}{by}." + (f" Note: {self.access_note}" if self.access_note else "")


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
        info = entry.info
        text = None if info.access_rule is None else self.rule_text.get(info.access_rule, "mapping rule")
        return Decision(ok, info.id, info.user_name, chains, info.active, info.access_type, info.access_rule,
                        text, info.access_note)

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