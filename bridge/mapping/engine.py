"""The authorizer: ``check``, ``rights`` and ``explain`` for the portal, one per process."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from bridge.config import Config
from bridge.mapping.cache import AuthzCache, Entry
from bridge.mapping.evaluate import allowed, effective_rights, granted_at, scopes_allowed
from bridge.mapping.explain import Chain, explain
from bridge.mapping.holders import right_candidates
from bridge.mapping.model import ROOT, GroupInfo, Model
from bridge.mapping.rules import compiled_rules, describe_rule
from bridge.services.errors import NotFound, ServiceError
from bridge.store.db import Store
from bridge.store.models import User

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


#: candidate lists of "who may" kept (per right and generation of the store)
CANDIDATE_LISTS = 8
#: a bulk check answered again when the store changed while it was answered, at most so often
MAX_BULK_TRIES = 3


@dataclass(frozen=True)
class CheckItem:
    user: str
    right: str
    scope: str = ROOT
    interactive: bool = False


@dataclass(frozen=True)
class ScopesAnswer:
    user_id: str
    user_name: str
    granted_at: tuple[str, ...]  # where the right is granted (it holds there and below)
    scopes: tuple[str, ...]  # every node where it holds


@dataclass(frozen=True)
class UsersAnswer:
    users: list[tuple[str, str]]  # (id, userName) of the users who may
    next: str | None  # the cursor to go on from; None when there are no more
    scanned: int


def no_user(user: str) -> NotFound:
    """What a check naming ``user`` gets when no user is known by that id or userName."""
    return NotFound(f"no user {user!r} (by id or userName)", field="user")


class Authorizer:
    def __init__(self, store: Store, config: Config, max_users: int | None = None):
        self.rules = compiled_rules(config.mapping)
        self.rule_text = {i: describe_rule(r) for i, r in enumerate(config.mapping.rules, start=1)}
        self.cache = AuthzCache(store, self.rules, max_users or config.mapping.cache_users)
        self._lock = threading.Lock()
        self._candidate_cache: dict[tuple[str, int], list[str] | None] = {}

    def _resolve(self, user: str, scope: str, *, synced: bool = False) -> tuple[Model, Entry]:
        if not synced:
            self.cache.sync()
        found = self.cache.entry(user)
        if found is None:
            raise no_user(user)
        model, entry = found
        if scope not in model.parents:
            raise NotFound(f"no scope node {scope!r}", field="scope")
        return model, entry

    def check(self, user: str, right: str, scope: str, *, explain: bool = False,
              interactive: bool = False) -> Decision:
        """May ``user`` (id or userName) exercise ``right`` at ``scope``?"""
        return self._decide(CheckItem(user, right, scope, interactive), explain=explain, synced=False)

    def check_many(self, items: Sequence[CheckItem], *, explain: bool = False) -> list[Decision | ServiceError]:
        """Many checks against one state of the store: each item's decision, or the error
        that item alone gets (an unknown user or scope). When the store changes while they
        are answered, they are answered again (MAX_BULK_TRIES times at most)."""
        out: list[Decision | ServiceError] = []
        for _ in range(MAX_BULK_TRIES):
            generation = self.cache.sync()
            # the users no one holds, found in one look rather than one snapshot each
            unknown = self.cache.unknown(item.user for item in items)
            out = []
            for item in items:
                if item.user in unknown:
                    out.append(no_user(item.user))
                    continue
                try:
                    out.append(self._decide(item, explain=explain, synced=True))
                except ServiceError as exc:
                    out.append(exc)
            # users not cached were read from the store as it is now: when it moved meanwhile,
            # answer again from the newer state rather than mix two
            if self.cache.sync() == generation:
                break
        return out

    def _decide(self, item: CheckItem, *, explain: bool, synced: bool) -> Decision:
        model, entry = self._resolve(item.user, item.scope, synced=synced)
        ok = allowed(model, entry.compiled, item.right, item.scope, interactive=item.interactive)
        chains = self._explain(model, entry, item.right, item.scope, item.interactive) if explain else None
        info = entry.info
        text = None if info.access_rule is None else self.rule_text.get(info.access_rule, "mapping rule")
        return Decision(ok, info.id, info.user_name, chains, info.active, info.access_type, info.access_rule,
                        text, info.access_note)

    def scopes(self, user: str, right: str, *, interactive: bool = False) -> ScopesAnswer:
        """In which scopes may ``user`` exercise ``right``: where it is granted, and every
        node that so holds it (those and below)."""
        model, entry = self._resolve(user, ROOT)
        granted = granted_at(model, entry.compiled, right, interactive=interactive)
        return ScopesAnswer(entry.info.id, entry.info.user_name, granted, scopes_allowed(model, granted))

    def users(self, right: str, scope: str, *, interactive: bool = False, after: str = "", limit: int = 100,
              max_scanned: int = 5000) -> UsersAnswer:
        """Who may exercise ``right`` at ``scope``: the active users it can reach (admins, the
        holders of a role that includes it, its individual holders; everyone when a rule on
        users' attributes gives such a role), each decided by ``check``, in id order from
        ``after``. At most ``limit`` are returned and ``max_scanned`` candidates looked at;
        ``next`` continues where this stopped (None: there are no more)."""
        generation = self.cache.sync()
        model = self.cache.model()
        if scope not in model.parents:
            raise NotFound(f"no scope node {scope!r}", field="scope")
        candidates = self._candidates(right, generation)
        if candidates is None:  # a rule on users' attributes gives it: anyone may
            with self.cache.store.read() as session:
                candidates = list(session.scalars(select(User.id).where(User.active.is_(True), User.id > after)
                                                  .order_by(User.id).limit(max_scanned + 1)))
        else:
            start = bisect.bisect_right(candidates, after)
            candidates = candidates[start:start + max_scanned + 1]
        found: list[tuple[str, str]] = []
        scanned = 0
        for user_id in candidates[:max_scanned]:
            scanned += 1
            entry = self.cache.entry(user_id)
            if entry is not None and allowed(entry[0], entry[1].compiled, right, scope, interactive=interactive):
                found.append((user_id, entry[1].info.user_name))
                if len(found) == limit:
                    break
        more = scanned < len(candidates)  # stopped at the limit, or at max_scanned with more behind
        return UsersAnswer(found, candidates[scanned - 1] if more and scanned else None, scanned)

    def _candidates(self, right: str, generation: int) -> list[str] | None:
        """Who may hold ``right`` (holders.right_candidates), kept while the store's
        generation stands: the pages of one walk share one look at every group."""
        key = (right, generation)
        with self._lock:
            if key in self._candidate_cache:
                return self._candidate_cache[key]
        found = right_candidates(self.cache.store, self.cache.rules, right)
        with self._lock:
            self._candidate_cache[key] = found
            while len(self._candidate_cache) > CANDIDATE_LISTS:
                self._candidate_cache.pop(next(iter(self._candidate_cache)))
        return found

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