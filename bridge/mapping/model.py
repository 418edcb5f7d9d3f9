"""The in-memory shape of everything ``check`` needs, independent of the database.

The loader fills these from the store, the tests build them by hand; the
evaluator and explain work on them alone. Ids are the store's ids; names are
kept for explain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

ROOT = "instance"


@dataclass(frozen=True)
class Holding:
    """A role at a scope node that a user or group holds, and why: a stored grant
    (``grant_id``) or a mapping rule (``rule``, its number in the config)."""

    role_id: str
    scope_id: str
    grant_id: int | None = None
    rule: int | None = None
    origin: str = "api"


@dataclass(frozen=True)
class GroupInfo:
    id: str
    name: str
    source: str
    parents: tuple[str, ...]  # the groups this group is a member of
    holdings: tuple[Holding, ...]


@dataclass(frozen=True)
class UserInfo:
    id: str
    user_name: str
    active: bool
    access_type: str  # admin | backend | api
    memberships: tuple[tuple[str, tuple[str, ...]], ...]  # (group id, origins)
    holdings: tuple[Holding, ...]
    individual: tuple[tuple[str, str], ...]  # (right, scope id)
    access_rule: int | None = None  # the mapping rule that set access_type (bridge.services.access)
    access_note: str | None = None  # why the access type is not what the rules say


@dataclass
class Model:
    """The slowly changing part: the scope tree, the roles and the rights."""

    parents: dict[str, str | None]  # scope id -> parent id (None for the root)
    role_names: dict[str, str]  # role id -> name
    role_rights: dict[str, frozenset[str]]  # role id -> rights the role itself lists
    role_includes: dict[str, tuple[str, ...]]  # role id -> included role ids
    rights: frozenset[str]  # every known right
    role_ids: dict[str, str] = field(default_factory=dict)  # name -> id
    closure: dict[str, frozenset[str]] = field(default_factory=dict)  # role id -> all rights
    _chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _children: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.role_ids = {name: rid for rid, name in self.role_names.items()}
        for role_id in self.role_names:
            self._close(role_id, ())

    def _close(self, role_id: str, stack: tuple[str, ...]) -> frozenset[str]:
        done = self.closure.get(role_id)
        if done is not None:
            return done
        rights = set(self.role_rights.get(role_id, ()))
        for included in self.role_includes.get(role_id, ()):
            if included not in stack and included in self.role_names:  # the store refuses cycles
                rights |= self._close(included, stack + (role_id,))
        result = frozenset(rights)
        self.closure[role_id] = result
        return result

    def descendants(self, scope_id: str) -> tuple[str, ...]:
        """The node and every node below it, the node first (a right granted at a node
        holds there and below)."""
        children = self._children
        if not children:  # built whole, then set: threads share the model
            children = {}
            for node, parent in self.parents.items():
                if parent is not None:
                    children.setdefault(parent, []).append(node)
            children.setdefault(ROOT, [])
            self._children = children
        out: list[str] = []
        pending = [scope_id]
        while pending:
            node = pending.pop()
            out.append(node)
            pending.extend(sorted(children.get(node, ()), reverse=True))
        return tuple(out)

    def chain(self, scope_id: str) -> tuple[str, ...]:
        """The node and its ancestors up to the root, nearest first."""
        found = self._chains.get(scope_id)
        if found is not None:
            return found
        path: list[str] = []
        node: str | None = scope_id
        while node is not None and node not in path:
            path.append(node)
            node = self.parents.get(node)
        result = tuple(path)
        self._chains[scope_id] = result
        return result


class Groups(Protocol):
    """Where the evaluator finds a group (None for one that no longer exists)."""

    def __call__(self, group_id: str) -> GroupInfo | None: ...


@dataclass(frozen=True)
class Compiled:
    """A user's rights, ready for ``check``: the rights granted at each node (not yet
    inherited downwards) and the groups they came through."""

    user_id: str
    user_name: str
    active: bool
    access_type: str
    rights_at: dict[str, frozenset[str]]
    groups: frozenset[str]
