"""Rights and roles: named bundles of rights that may include other roles.

Includes never form a cycle (refused with the cycle named). Roles declared in
the config belong to the config: the API may copy them but not change or delete
them; ``apply_config`` sets them on every start. Every change is audited and
tells every replica's check cache to start afresh (roles are few and rarely
change, so precision buys nothing here).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from bridge.services import audit
from bridge.services.errors import Conflict, InvalidValue, NotFound
from bridge.store.models import Right, Role, RoleInclude, RoleRight

if TYPE_CHECKING:
    from bridge.services.unit import UnitOfWork

ROLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
RIGHT_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
CONFIG = "config"


class RoleCycle(Conflict):
    code = "roleCycle"


class ConfigOwned(Conflict):
    code = "configOwned"



@dataclass(frozen=True)
class RoleFacts:
    """What the admin API shows of a role besides its row."""

    rights: list[str]
    includes: list[str]
    effective_rights: list[str]


@dataclass
class RoleService:
    uow: UnitOfWork

    # -- reads -------------------------------------------------------------------

    def get(self, name: str) -> Role:
        role = self.uow.session.scalar(select(Role).where(Role.name == name)) if "\x00" not in name else None
        if role is None:
            raise NotFound(f"no role named {name!r}", field="role")
        return role

    def all(self) -> list[Role]:
        return list(self.uow.session.scalars(select(Role).order_by(Role.name)))

    def rights_of(self, role: Role) -> list[str]:
        return sorted(self.uow.session.scalars(select(RoleRight.right_name).where(RoleRight.role_id == role.id)))

    def includes_of(self, role: Role) -> list[str]:
        return sorted(self.uow.session.scalars(
            select(Role.name).join(RoleInclude, RoleInclude.included_role_id == Role.id)
            .where(RoleInclude.role_id == role.id)))

    def described(self, roles: list[Role]) -> dict[str, RoleFacts]:
        """Each role's own rights, its includes and its effective rights (its own and those of
        every role it includes, transitively), by role id: two queries for any number of
        roles (the whole role graph is small), not three per role and level."""
        names = {role_id: name for role_id, name in self.uow.session.execute(select(Role.id, Role.name))}
        rights: dict[str, set[str]] = {}
        for role_id, right in self.uow.session.execute(select(RoleRight.role_id, RoleRight.right_name)):
            rights.setdefault(role_id, set()).add(right)
        includes: dict[str, set[str]] = {}
        for role_id, included in self.uow.session.execute(select(RoleInclude.role_id, RoleInclude.included_role_id)):
            includes.setdefault(role_id, set()).add(included)
        out: dict[str, RoleFacts] = {}
        for role in roles:
            effective: set[str] = set()
            pending, seen = [role.id], {role.id}
            while pending:
                current = pending.pop()
                effective |= rights.get(current, set())
                for included in includes.get(current, set()) - seen:
                    seen.add(included)
                    pending.append(included)
            out[role.id] = RoleFacts(rights=sorted(rights.get(role.id, set())),
                                     includes=sorted(names[i] for i in includes.get(role.id, set())),
                                     effective_rights=sorted(effective))
        return out

    def list_rights(self) -> list[Right]:
        return list(self.uow.session.scalars(select(Right).order_by(Right.name)))

    # -- rights ------------------------------------------------------------------

    def ensure_right(self, name: str, description: str | None = None) -> Right:
        if not isinstance(name, str) or not RIGHT_NAME.match(name):
            raise InvalidValue(f"right {name!r}: use 1-128 letters, digits, '.', '_', ':' or '-'", field="rights")
        right = self.uow.session.get(Right, name)
        if right is None:
            right = Right(name=name, description=description or "")
            self.uow.session.add(right)
            self.uow.session.flush()
            audit.record(self.uow.session, self.uow.actor, "right.create", "right", name, name,
                         {"description": [None, right.description]})
        elif description is not None and description != right.description:
            audit.record(self.uow.session, self.uow.actor, "right.update", "right", name, name,
                         {"description": [right.description, description]})
            right.description = description
        return right

    def delete_right(self, name: str) -> None:
        right = self.uow.session.get(Right, name)
        if right is None:
            raise NotFound(f"no right named {name!r}", field="right")
        in_config = self.uow.session.scalars(
            select(Role.name).join(RoleRight, RoleRight.role_id == Role.id)
            .where(RoleRight.right_name == name, Role.origin == CONFIG)).all()
        if in_config:
            raise ConfigOwned(f"right {name!r} is listed by config roles {', '.join(sorted(in_config))}; "
                              "remove it from the config file")
        audit.record(self.uow.session, self.uow.actor, "right.delete", "right", name, name, {})
        self.uow.session.delete(right)
        self.uow.session.flush()
        self.uow.changes.everything()

    # -- roles -------------------------------------------------------------------

    def create(self, name: str, *, description: str = "", rights: Iterable[str] = (),
               includes: Iterable[str] = (), origin: str = "api") -> Role:
        if not isinstance(name, str) or not ROLE_NAME.match(name):
            raise InvalidValue(f"role name {name!r}: use 1-64 letters, digits, '.', '_' or '-'", field="name")
        if self.uow.session.scalar(select(Role.id).where(Role.name == name)) is not None:
            raise Conflict(f"a role named {name!r} exists already", field="name")
        role = Role(name=name, description=description, origin=origin)
        self.uow.session.add(role)
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "role.create", "role", role.id, name,
                     {"description": [None, description], "origin": [None, origin]})
        self._set(role, rights=list(rights), includes=list(includes))
        self.uow.changes.everything()
        return role

    def update(self, role: Role, *, description: str | None = None, rights: Iterable[str] | None = None,
               includes: Iterable[str] | None = None, from_config: bool = False) -> Role:
        if role.origin == CONFIG and not from_config:
            raise ConfigOwned(f"role {role.name!r} is declared in the config file; change it there (or copy it)")
        if description is not None and description != role.description:
            audit.record(self.uow.session, self.uow.actor, "role.update", "role", role.id, role.name,
                         {"description": [role.description, description]})
            role.description = description
            role.updated_at = self.uow.now()
        changed = self._set(role, rights=None if rights is None else list(rights),
                            includes=None if includes is None else list(includes))
        if changed:
            self.uow.changes.everything()
        return role

    def rename(self, role: Role, name: str) -> Role:
        """Give ``role`` a new name. Grants and includes refer to the role itself and follow;
        a role the config file declares, or one a mapping rule of the config names, keeps its
        name (the file would bring the old one back, or the rule would stop working)."""
        if name == role.name:
            return role
        if role.origin == CONFIG:
            raise ConfigOwned(f"role {role.name!r} is declared in the config file; rename it there")
        naming = [n for n, rule in enumerate(self.uow.config.mapping.rules, start=1) if rule.role == role.name]
        if naming:
            raise ConfigOwned(f"mapping rule{'s' if len(naming) > 1 else ''} #{', #'.join(map(str, naming))} of the "
                              f"config give role {role.name!r}: change the rules first", field="name")
        if not isinstance(name, str) or not ROLE_NAME.match(name):
            raise InvalidValue(f"role name {name!r}: use 1-64 letters, digits, '.', '_' or '-'", field="name")
        if self.uow.session.scalar(select(Role.id).where(Role.name == name)) is not None:
            raise Conflict(f"a role named {name!r} exists already", field="name")
        audit.record(self.uow.session, self.uow.actor, "role.rename", "role", role.id, name,
                     {"name": [role.name, name]})
        role.name, role.updated_at = name, self.uow.now()
        self.uow.session.flush()
        self.uow.changes.everything()
        return role

    def delete(self, role: Role, *, from_config: bool = False) -> None:
        if role.origin == CONFIG and not from_config:
            raise ConfigOwned(f"role {role.name!r} is declared in the config file; remove it there")
        audit.record(self.uow.session, self.uow.actor, "role.delete", "role", role.id, role.name,
                     {"rights": [self.rights_of(role), None], "includes": [self.includes_of(role), None]})
        self.uow.session.delete(role)
        self.uow.session.flush()
        self.uow.changes.everything()

    def copy(self, source: Role, name: str, description: str | None = None) -> Role:
        """A new role (owned by the API) with the rights and includes of ``source``."""
        return self.create(name, description=source.description if description is None else description,
                           rights=self.rights_of(source), includes=self.includes_of(source))

    def set_origin(self, role: Role, origin: str) -> None:
        if role.origin != origin:
            audit.record(self.uow.session, self.uow.actor, "role.update", "role", role.id, role.name,
                         {"origin": [role.origin, origin]})
            role.origin = origin
            self.uow.changes.everything()

    # -- helpers -------------------------------------------------------------------

    def _set(self, role: Role, *, rights: list[str] | None, includes: list[str] | None) -> bool:
        """Make the role's rights and includes these; whether anything changed."""
        session = self.uow.session
        changes: dict[str, list[object]] = {}
        if rights is not None:
            before = self.rights_of(role)
            wanted = sorted(set(rights))
            for right in wanted:
                self.ensure_right(right)
            if wanted != before:
                session.execute(delete(RoleRight).where(RoleRight.role_id == role.id,
                                                        RoleRight.right_name.not_in(wanted)))
                session.add_all(RoleRight(role_id=role.id, right_name=r) for r in set(wanted) - set(before))
                changes["rights"] = [before, wanted]
        if includes is not None:
            before = self.includes_of(role)
            wanted = sorted(set(includes))
            ids = {name: self.get(name).id for name in wanted}
            for name, included_id in ids.items():
                self._refuse_cycle(role, name, included_id)
            if wanted != before:
                session.execute(delete(RoleInclude).where(RoleInclude.role_id == role.id))
                session.add_all(RoleInclude(role_id=role.id, included_role_id=i) for i in ids.values())
                changes["includes"] = [before, wanted]
        if changes:
            session.flush()
            role.updated_at = self.uow.now()
            audit.record(session, self.uow.actor, "role.update", "role", role.id, role.name, changes)
        return bool(changes)

    def _refuse_cycle(self, role: Role, name: str, included_id: str) -> None:
        """Including ``name`` in ``role`` is a cycle when ``role`` is reachable from it."""
        if included_id == role.id:
            raise RoleCycle(f"role {role.name!r} cannot include itself", field="includes")
        path = self._path(included_id, role.id)
        if path is not None:
            names = dict(self.uow.session.execute(select(Role.id, Role.name).where(Role.id.in_(path))).all())
            cycle = " -> ".join([role.name] + [names[i] for i in path])
            raise RoleCycle(f"role {role.name!r} cannot include {name!r}: that would make a cycle ({cycle})",
                            field="includes")

    def _path(self, start: str, goal: str) -> list[str] | None:
        """Role ids from ``start`` to ``goal`` along includes, or None."""
        previous: dict[str, str | None] = {start: None}
        frontier = [start]
        while frontier:
            rows = self.uow.session.execute(select(RoleInclude.role_id, RoleInclude.included_role_id)
                                            .where(RoleInclude.role_id.in_(frontier))).all()
            frontier = []
            for parent, child in rows:
                if child in previous:
                    continue
                previous[child] = parent
                if child == goal:
                    path: list[str] = []
                    node: str | None = child
                    while node is not None:
                        path.append(node)
                        node = previous[node]
                    return list(reversed(path))
                frontier.append(child)
        return None
