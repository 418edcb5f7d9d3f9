"""The scope tree: ``instance`` at the root, then nodes addressed as ``LEVEL:NAME``.

A node's level comes from its id and must be one of the configured levels, below
its parent's level (a pool may hang under a company group or under the
instance, never the other way round). Nodes from the config belong to the
config. Deleting a node with children is refused; its grants go with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from bridge.services import audit
from bridge.services.errors import Conflict, InvalidValue, NotFound
from bridge.services.roles import CONFIG, ConfigOwned
from bridge.store.models import Grant, ScopeNode, UserRight

if TYPE_CHECKING:
    from bridge.services.unit import UnitOfWork

ROOT = "instance"
SCOPE_ID = re.compile(r"^(?P<level>[a-z_]{1,32}):(?P<name>[^\s:]{1,128})$")


@dataclass
class ScopeService:
    uow: UnitOfWork

    @property
    def levels(self) -> list[str]:
        return list(self.uow.config.scopes.levels)

    def parse(self, scope_id: str) -> tuple[str, str]:
        """(level, name) of a scope id; InvalidValue for a malformed id or an unknown level."""
        if scope_id == ROOT:
            return ROOT, ROOT
        match = SCOPE_ID.match(scope_id or "")
        if not match or "\x00" in scope_id:
            raise InvalidValue(f"scope {scope_id!r} is not 'instance' or LEVEL:NAME (like pool:north-1)",
                               field="scope")
        if match["level"] not in self.levels[1:]:
            raise InvalidValue(f"scope {scope_id!r}: level {match['level']!r} is not one of "
                               f"{', '.join(self.levels[1:])}", field="scope")
        return match["level"], match["name"]

    def get(self, scope_id: str) -> ScopeNode:
        node = self.uow.session.get(ScopeNode, scope_id)
        if node is None:
            if scope_id == ROOT:
                return self.ensure_root()
            raise NotFound(f"no scope node {scope_id!r}", field="scope")
        return node

    def all(self) -> list[ScopeNode]:
        self.ensure_root()
        return list(self.uow.session.scalars(select(ScopeNode).order_by(ScopeNode.id)))

    def ensure_root(self) -> ScopeNode:
        node = self.uow.session.get(ScopeNode, ROOT)
        if node is None:
            node = ScopeNode(id=ROOT, level=ROOT, name=ROOT, parent_id=None, origin="builtin")
            self.uow.session.add(node)
            self.uow.session.flush()
            audit.record(self.uow.session, self.uow.actor, "scope.create", "scope", ROOT, ROOT, {})
            self.uow.changes.everything()
        return node

    def create(self, scope_id: str, parent: str = ROOT, name: str | None = None, origin: str = "api") -> ScopeNode:
        level, short = self.parse(scope_id)
        if scope_id == ROOT or self.uow.session.get(ScopeNode, scope_id) is not None:
            raise Conflict(f"scope node {scope_id!r} exists already", field="id")
        parent_node = self.get(parent)
        self._check_levels(level, parent_node)
        node = ScopeNode(id=scope_id, level=level, name=name or short, parent_id=parent_node.id, origin=origin)
        self.uow.session.add(node)
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "scope.create", "scope", node.id, node.name,
                     {"parent": [None, parent_node.id], "origin": [None, origin]})
        self.uow.changes.everything()
        return node

    def update(self, node: ScopeNode, *, name: str | None = None, parent: str | None = None,
               from_config: bool = False, origin: str | None = None) -> ScopeNode:
        if node.origin == CONFIG and not from_config:
            raise ConfigOwned(f"scope node {node.id!r} is declared in the config file; change it there")
        if node.id == ROOT and parent is not None:
            raise InvalidValue("the instance is the root and has no parent", field="parent")
        changes: dict[str, list[object]] = {}
        if name is not None and name != node.name:
            changes["name"] = [node.name, name]
            node.name = name
        if parent is not None and parent != node.parent_id:
            target = self.get(parent)
            self._check_levels(node.level, target)
            if target.id == node.id or node.id in self.ancestors(target.id):
                raise Conflict(f"moving {node.id!r} under {parent!r} would make a cycle", field="parent")
            changes["parent"] = [node.parent_id, target.id]
            node.parent_id = target.id
        if origin is not None and origin != node.origin:
            changes["origin"] = [node.origin, origin]
            node.origin = origin
        if changes:
            self.uow.session.flush()
            audit.record(self.uow.session, self.uow.actor, "scope.update", "scope", node.id, node.name, changes)
            self.uow.changes.everything()
        return node

    def delete(self, node: ScopeNode) -> None:
        if node.id == ROOT:
            raise Conflict("the instance node cannot be deleted")
        if node.origin == CONFIG:
            raise ConfigOwned(f"scope node {node.id!r} is declared in the config file; remove it there")
        children = self.uow.session.scalars(select(ScopeNode.id).where(ScopeNode.parent_id == node.id)).all()
        if children:
            raise Conflict(f"scope node {node.id!r} has children ({', '.join(sorted(children)[:5])}); "
                           "delete or move them first")
        grants = self.uow.session.scalar(select(func.count()).select_from(Grant).where(Grant.scope_id == node.id))
        rights = self.uow.session.scalar(select(func.count()).select_from(UserRight)
                                         .where(UserRight.scope_id == node.id))
        audit.record(self.uow.session, self.uow.actor, "scope.delete", "scope", node.id, node.name,
                     {"parent": [node.parent_id, None], "grants_removed": grants, "user_rights_removed": rights})
        self.uow.session.delete(node)
        self.uow.session.flush()
        self.uow.changes.everything()

    def ancestors(self, scope_id: str) -> list[str]:
        """The node's ancestors, nearest first (not the node itself)."""
        out: list[str] = []
        node = self.uow.session.get(ScopeNode, scope_id)
        while node is not None and node.parent_id is not None and node.parent_id not in out:
            out.append(node.parent_id)
            node = self.uow.session.get(ScopeNode, node.parent_id)
        return out

    def _check_levels(self, level: str, parent: ScopeNode) -> None:
        levels = self.levels
        parent_rank = levels.index(parent.level) if parent.level in levels else -1
        if levels.index(level) <= parent_rank:
            raise InvalidValue(f"a {level} node cannot hang under {parent.id!r} ({parent.level}): "
                               f"levels go {' > '.join(levels)}", field="parent")
