"""Grants (a role at a scope node, for a user or a group) and individual rights
(one right at a node for one user, on top of their roles)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from bridge.services import audit
from bridge.services.errors import InvalidValue, NotFound
from bridge.store.models import Grant, Group, Right, Role, User, UserRight

if TYPE_CHECKING:
    from bridge.services.unit import UnitOfWork


def describe(grant: Grant, role: str) -> dict[str, list[object]]:
    holder = {"user": grant.user_id} if grant.user_id else {"group": grant.group_id}
    return {"role": [None, role], "scope": [None, grant.scope_id], "origin": [None, grant.origin],
            **{k: [None, v] for k, v in holder.items()}}


@dataclass
class GrantService:
    uow: UnitOfWork

    def get(self, grant_id: int) -> Grant:
        grant = self.uow.session.get(Grant, grant_id)
        if grant is None:
            raise NotFound(f"no grant {grant_id}", field="grant")
        return grant

    def find(self, *, user_id: str | None = None, group_id: str | None = None, role: str | None = None,
             scope: str | None = None) -> list[tuple[Grant, str]]:
        query = select(Grant, Role.name).join(Role, Role.id == Grant.role_id).order_by(Grant.id)
        if user_id is not None:
            query = query.where(Grant.user_id == user_id)
        if group_id is not None:
            query = query.where(Grant.group_id == group_id)
        if role is not None:
            query = query.where(Role.name == role)
        if scope is not None:
            query = query.where(Grant.scope_id == scope)
        return [(g, name) for g, name in self.uow.session.execute(query).all()]

    def grant(self, role: str, scope: str, *, user_id: str | None = None, group_id: str | None = None,
              origin: str = "api") -> tuple[Grant, bool]:
        """Grant ``role`` at ``scope`` to a user or a group; returns (grant, created)."""
        if (user_id is None) == (group_id is None):
            raise InvalidValue("a grant is for a user or for a group (exactly one)", field="user")
        role_row = self.uow.roles.get(role)
        node = self.uow.scopes.get(scope)
        self._holder(user_id, group_id)
        query = select(Grant).where(Grant.role_id == role_row.id, Grant.scope_id == node.id, Grant.origin == origin)
        query = query.where(Grant.user_id == user_id) if user_id else query.where(Grant.group_id == group_id)
        existing = self.uow.session.scalar(query)
        if existing is not None:
            return existing, False
        grant = Grant(role_id=role_row.id, scope_id=node.id, user_id=user_id, group_id=group_id, origin=origin)
        self.uow.session.add(grant)
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "grant.create", "grant", str(grant.id), role_row.name,
                     describe(grant, role_row.name))
        self._touch(grant)
        return grant, True

    def revoke(self, grant: Grant) -> None:
        role = self.uow.session.get(Role, grant.role_id)
        changes = {k: [v[1], None] for k, v in describe(grant, role.name if role else grant.role_id).items()}
        audit.record(self.uow.session, self.uow.actor, "grant.delete", "grant", str(grant.id),
                     role.name if role else None, changes)
        self._touch(grant)
        self.uow.session.delete(grant)
        self.uow.session.flush()

    # -- individual rights -----------------------------------------------------------

    def user_rights(self, user_id: str) -> list[UserRight]:
        return list(self.uow.session.scalars(select(UserRight).where(UserRight.user_id == user_id)
                                             .order_by(UserRight.scope_id, UserRight.right_name)))

    def give_right(self, user_id: str, right: str, scope: str) -> tuple[UserRight, bool]:
        self._holder(user_id, None)
        if self.uow.session.get(Right, right) is None:
            raise NotFound(f"no right named {right!r}", field="right")
        node = self.uow.scopes.get(scope)
        existing = self.uow.session.get(UserRight, (user_id, right, node.id))
        if existing is not None:
            return existing, False
        row = UserRight(user_id=user_id, right_name=right, scope_id=node.id)
        self.uow.session.add(row)
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "user_right.create", "user", user_id, self._name(user_id),
                     {"right": [None, right], "scope": [None, node.id]})
        self.uow.changes.user(user_id)
        return row, True

    def take_right(self, user_id: str, right: str, scope: str) -> None:
        row = self.uow.session.get(UserRight, (user_id, right, scope))
        if row is None:
            raise NotFound(f"user {user_id} has no individual right {right!r} at {scope!r}", field="right")
        audit.record(self.uow.session, self.uow.actor, "user_right.delete", "user", user_id, self._name(user_id),
                     {"right": [right, None], "scope": [scope, None]})
        self.uow.session.delete(row)
        self.uow.session.flush()
        self.uow.changes.user(user_id)

    # -- helpers -----------------------------------------------------------------------

    def _name(self, user_id: str) -> str | None:
        """The user's name, the target name of events about the user (the audit finds them by it)."""
        user = self.uow.session.get(User, user_id)
        return user.user_name if user is not None else None

    def _holder(self, user_id: str | None, group_id: str | None) -> None:
        if user_id is not None and self.uow.session.get(User, user_id) is None:
            raise NotFound(f"no user with id {user_id}", field="user")
        if group_id is not None and self.uow.session.get(Group, group_id) is None:
            raise NotFound(f"no group with id {group_id}", field="group")

    def _touch(self, grant: Grant) -> None:
        if grant.user_id:
            self.uow.changes.user(grant.user_id)
        else:
            self.uow.changes.group(grant.group_id or "")
