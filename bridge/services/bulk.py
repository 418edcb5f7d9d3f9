"""Changes to many users at once, all or nothing: grant or revoke roles, deactivate,
delete. The users are named one by one (ids or userNames) or selected by a condition (who
holds a role, a search); a selection is bounded, and an error names the user it met."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select

from bridge.services.errors import InvalidValue, ServiceError
from bridge.services.unit import UnitOfWork
from bridge.store.models import User

#: users one bulk change may touch
MAX_USERS = 10_000
#: grants a bulk revoke leaves alone: the config's own
KEPT_ORIGINS = ("config",)


@dataclass(frozen=True)
class Outcome:
    changed: int
    unchanged: int


@contextmanager
def naming(ref: str) -> Iterator[None]:
    """An error names the user it met (and the whole change is undone)."""
    try:
        yield
    except ServiceError as exc:
        exc.message = f"{ref}: {exc.message} (nothing was changed)"
        raise


def searched(text: str) -> ColumnElement[bool]:
    """The users a search selects (as ``GET /users?q=``); a search of white space or
    invisible characters only would match everyone (``%%``) and is refused."""
    from bridge.services.users import matching, user_name_key

    if not user_name_key(text):
        raise InvalidValue("q: white space or invisible characters only would select every user", field="q")
    return matching(text)


def selected(uow: UnitOfWork, refs: Sequence[str] | None, where: ColumnElement[bool] | None) -> list[tuple[str, User]]:
    """The users of a bulk change with the name to report each by: those ``refs`` name (ids
    or userNames, each at most once), or those ``where`` selects (at most MAX_USERS)."""
    if refs is not None:
        out: dict[str, tuple[str, User]] = {}
        for ref in dict.fromkeys(refs):
            with naming(ref):
                user = uow.users.by_ref(ref, field="users")
            out.setdefault(user.id, (ref, user))
        return list(out.values())
    assert where is not None
    count = uow.session.scalar(select(func.count()).select_from(User).where(where)) or 0
    if count > MAX_USERS:
        raise InvalidValue(f"the selection holds {count} users, more than {MAX_USERS}: narrow it", field="selection")
    return [(u.user_name, u) for u in uow.session.scalars(select(User).where(where).order_by(User.user_name_key))]


def grant_roles(uow: UnitOfWork, users: list[tuple[str, User]], roles: Sequence[tuple[str, str]]) -> Outcome:
    changed = 0
    for ref, user in users:
        with naming(ref):
            created = [uow.grants.grant(role, scope, user_id=user.id, origin="api")[1] for role, scope in roles]
        changed += any(created)
    return Outcome(changed, len(users) - changed)


def revoke_roles(uow: UnitOfWork, users: list[tuple[str, User]], roles: Sequence[tuple[str, str]]) -> Outcome:
    """Take the users' own grants of ``roles`` at their scopes (what groups and rules give
    stays: change the group or the rule); the config's grants stay."""
    for role, scope in roles:  # an unknown role or scope is an error, not "nothing to revoke"
        uow.roles.get(role)
        uow.scopes.get(scope)
    changed = 0
    for ref, user in users:
        with naming(ref):
            taken = 0
            for role, scope in roles:
                node = uow.scopes.get(scope)
                for grant, _ in uow.grants.find(user_id=user.id, role=role, scope=node.id):
                    if grant.origin not in KEPT_ORIGINS:
                        uow.grants.revoke(grant)
                        taken += 1
        changed += taken > 0
    return Outcome(changed, len(users) - changed)


def deactivate(uow: UnitOfWork, users: list[tuple[str, User]]) -> Outcome:
    changed = 0
    for ref, user in users:
        if user.active:
            with naming(ref):
                uow.users.deactivate(user)
            changed += 1
    return Outcome(changed, len(users) - changed)


def delete(uow: UnitOfWork, users: list[tuple[str, User]]) -> Outcome:
    for ref, user in users:
        with naming(ref):
            uow.users.delete(user)
    return Outcome(len(users), 0)
