"""The per-process cache behind ``check``, kept exact by the store's change log.

What is cached: the model (scope tree, roles with their included rights), every
group's parents and holdings, and compiled users (rights per node), each user
on first use, least recently used dropped beyond ``max_users``.

How it stays exact: every authorization-relevant write bumps the generation in
``authz_state`` in its own transaction and names what it touched in
``authz_changes`` (see bridge.services.changes). Each check first reads the
counter (one primary-key lookup). When it moved, the rows in between say which
users and groups to drop (``all`` drops everything); the next use reloads them.
So the first check after a change, on this replica or another, sees it.

Loads run outside the lock. A load that began at generation T is kept only if
the changes applied since T do not touch what it read (a short log of recent
changes is kept for that); otherwise it answers this one check and is dropped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from bridge.mapping.evaluate import compile_user
from bridge.mapping.loader import (
    find_user_id,
    load_group,
    load_groups,
    load_model,
    load_user,
    snapshot,
    stored_refs,
)
from bridge.mapping.model import Compiled, GroupInfo, Model, UserInfo
from bridge.mapping.rules import CompiledRules
from bridge.services.changes import ALL, GROUP, USER, read_generation
from bridge.services.users import UUID_SHAPE, user_name_key
from bridge.store.db import Store
from bridge.store.models import AuthzChange

RECENT_CHANGES = 50_000  # how far back a slow load can still be checked against


@dataclass(frozen=True)
class Entry:
    info: UserInfo
    compiled: Compiled
    groups: tuple[GroupInfo, ...]  # the group data it was compiled from, for explain


@dataclass
class Stats:
    hits: int = 0
    misses: int = 0
    model_builds: int = 0
    invalidations: int = 0
    resets: int = 0


@dataclass
class _Recent:
    """Changes applied lately, to tell whether a load that began at T is still good."""

    floor: int = -1  # changes after this generation are all here
    items: deque[tuple[int, str, str]] = field(default_factory=lambda: deque(maxlen=RECENT_CHANGES))

    def since(self, token: int) -> list[tuple[str, str]] | None:
        if token < self.floor:
            return None
        out = []
        for gen, kind, subject in reversed(self.items):  # newest first; stop at the load's start
            if gen <= token:
                break
            out.append((kind, subject))
        return out


class AuthzCache:
    def __init__(self, store: Store, rules: CompiledRules, max_users: int = 200_000):
        self.store = store
        self.rules = rules
        self.max_users = max_users
        self.stats = Stats()
        self._lock = threading.Lock()
        self._applied = -1
        self._model: Model | None = None
        self._groups: dict[str, GroupInfo] = {}
        self._users: OrderedDict[str, Entry] = OrderedDict()
        self._names: dict[str, str] = {}
        self._dependents: dict[str, set[str]] = {}
        self._recent = _Recent()

    # -- generation ------------------------------------------------------------

    def _read_state(self) -> tuple[int, int]:
        return read_generation(self.store)

    def sync(self) -> int:
        """Catch up with the store's generation; returns the generation now applied."""
        generation, pruned_below = self._read_state()
        if generation <= self._applied:
            return self._applied
        with self._lock:
            if generation <= self._applied:
                return self._applied
            if self._applied < 0 or self._applied + 1 < pruned_below:
                self._reset()
                self._recent = _Recent(floor=generation)
            else:
                with self.store.engine.connect() as conn:
                    rows = conn.execute(select(AuthzChange.generation, AuthzChange.subject_type,
                                               AuthzChange.subject_id)
                                        .where(AuthzChange.generation > self._applied,
                                               AuthzChange.generation <= generation)
                                        .order_by(AuthzChange.generation)).all()
                if read_generation(self.store)[1] > self._applied + 1:
                    # a prune committed between the two reads may have taken rows we needed
                    self._reset()
                    self._recent = _Recent(floor=generation)
                    rows = []
                for row in rows:
                    self._invalidate(row.subject_type, row.subject_id)
                    self._recent.items.append((row.generation, row.subject_type, row.subject_id))
                if len(self._recent.items) == self._recent.items.maxlen:
                    self._recent.floor = self._recent.items[0][0]
            self._applied = generation
            return generation

    # -- reads -------------------------------------------------------------------

    def model(self) -> Model:
        with self._lock:
            if self._model is not None:
                return self._model
            token = self._applied
        with snapshot(self.store) as conn:
            model = load_model(conn)
            groups = load_groups(conn, model, self.rules)
        with self._lock:
            self.stats.model_builds += 1
            if self._model is not None:
                return self._model
            later = self._recent.since(token)
            if later is not None and not any(kind == ALL for kind, _ in later):
                for kind, subject in later:
                    if kind == GROUP:
                        groups.pop(subject, None)
                self._model, self._groups = model, groups
        return model

    def _cached_id(self, user_ref: str) -> str | None:
        """The id of the cached user ``user_ref`` names (an id or a userName); under the lock."""
        if user_ref in self._users:
            return user_ref
        if UUID_SHAPE.match(user_ref):
            return None  # an id not cached: the store says whose it is (a userName that reads as it must not)
        return self._names.get(user_name_key(user_ref))

    def unknown(self, user_refs: Iterable[str]) -> set[str]:
        """Those of ``user_refs`` that name no user: the cache answers for the users it holds,
        the store for the rest in one snapshot (bridge.mapping.loader.stored_refs)."""
        with self._lock:
            uncached = {ref for ref in user_refs if self._cached_id(ref) not in self._users}
        if not uncached:
            return set()
        with snapshot(self.store) as conn:
            return uncached - stored_refs(conn, uncached)

    def entry(self, user_ref: str) -> tuple[Model, Entry] | None:
        """The model and the compiled user (by id or userName); None for no such user."""
        with self._lock:
            uid = self._cached_id(user_ref)
            found = self._users.get(uid) if uid is not None else None
            if found is not None and self._model is not None:
                self._users.move_to_end(found.info.id)
                self.stats.hits += 1
                return self._model, found
            token = self._applied
        model = self.model()
        with snapshot(self.store) as conn:
            uid = find_user_id(conn, user_ref)
            if uid is None:
                return None
            info = load_user(conn, model, self.rules, uid)
            if info is None:
                return None
            loaded: dict[str, GroupInfo | None] = {}
            compiled = compile_user(model, info, lambda gid: self._group(conn, model, gid, loaded))
        entry = Entry(info, compiled, tuple(g for gid in sorted(compiled.groups)
                                           if (g := loaded.get(gid)) is not None))
        self._keep(model, token, entry, loaded)
        return model, entry

    def _group(self, conn: Connection, model: Model, gid: str, loaded: dict[str, GroupInfo | None]) -> GroupInfo | None:
        if gid in loaded:
            return loaded[gid]
        info = self._groups.get(gid)
        if info is None:
            info = load_group(conn, model, self.rules, gid)
        loaded[gid] = info
        return info

    def _keep(self, model: Model, token: int, entry: Entry, groups: dict[str, GroupInfo | None]) -> None:
        with self._lock:
            self.stats.misses += 1
            if model is not self._model:
                return
            later = self._recent.since(token)
            if later is None:
                return
            touched_groups = {s for kind, s in later if kind == GROUP}
            if any(kind == ALL for kind, _ in later):
                return
            for gid, info in groups.items():
                if info is not None and gid not in touched_groups:
                    self._groups.setdefault(gid, info)
            uid = entry.info.id
            if (USER, uid) in later or touched_groups & entry.compiled.groups:
                return
            self._drop_user(uid)
            self._users[uid] = entry
            self._names[user_name_key(entry.info.user_name)] = uid
            for gid in entry.compiled.groups:
                self._dependents.setdefault(gid, set()).add(uid)
            while len(self._users) > self.max_users:
                self._drop_user(next(iter(self._users)))

    # -- invalidation ------------------------------------------------------------

    def _invalidate(self, kind: str, subject: str) -> None:
        if kind not in (ALL, USER, GROUP):  # a token's (bridge.services.token_cache)
            return
        self.stats.invalidations += 1
        if kind == ALL:
            self._reset()
        elif kind == USER:
            self._drop_user(subject)
        elif kind == GROUP:
            self._groups.pop(subject, None)
            for uid in list(self._dependents.pop(subject, ())):
                self._drop_user(uid)

    def _drop_user(self, uid: str) -> None:
        entry = self._users.pop(uid, None)
        if entry is None:
            return
        key = user_name_key(entry.info.user_name)
        if self._names.get(key) == uid:
            del self._names[key]
        for gid in entry.compiled.groups:
            users = self._dependents.get(gid)
            if users is not None:
                users.discard(uid)
                if not users:
                    del self._dependents[gid]

    def _reset(self) -> None:
        self.stats.resets += 1
        self._model = None
        self._groups = {}
        self._users.clear()
        self._names.clear()
        self._dependents.clear()

    def clear(self) -> None:
        """Forget everything (the next check reloads)."""
        with self._lock:
            self._reset()
            self._applied = -1
