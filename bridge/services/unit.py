"""A unit of work: one write transaction, one actor, every service on it.

LDAP sync batches group many changes in one unit, so a batch is applied whole or
not at all (a SCIM Bulk with ``failOnErrors: 1`` is one unit too, so a crash midway
applies none of it); a SCIM Bulk otherwise commits
each operation in a unit of its own (bridge.scim.storage).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from sqlalchemy.orm import Session

from bridge.clock import Clock, stamp, utcnow
from bridge.config import Config, OwnershipConfig
from bridge.services.access import AccessService
from bridge.services.accounts import AccountService
from bridge.services.actor import LOCAL_SOURCE, SCIM_PREFIX, Actor
from bridge.services.changes import ChangeLog
from bridge.services.conflicts import ConflictNote
from bridge.services.customers import CustomerService
from bridge.services.errors import Forbidden
from bridge.services.grants import GrantService
from bridge.services.groups import GroupService
from bridge.services.roles import RoleService
from bridge.services.scopes import ScopeService
from bridge.services.tokens import TokenService
from bridge.services.users import UserService
from bridge.services.visibility import adoptable


@dataclass(frozen=True)
class Refusal:
    """A change the unit refused (Forbidden), for the audit log."""

    what: str
    reason: str
    target_type: str
    target_id: str | None
    target_name: str | None


class UnitOfWork:
    def __init__(self, session: Session, actor: Actor, ownership: OwnershipConfig, config: Config | None = None,
                 clock: Clock = utcnow):
        self.session = session
        self.actor = actor
        #: SQLite: a write transaction holds the write lock from its start (bridge.store.db)
        self.sqlite = session.get_bind().dialect.name == "sqlite"
        #: the process's clock (bridge.clock): every time a service writes comes from it
        self.now = clock
        stamp(session, clock)
        self.config = config or Config(ownership=ownership)
        self.changes = ChangeLog(session)  # what check caches must drop, written at commit
        self._takeover = adoptable(ownership, actor.source)
        self.refusals: list[Refusal] = []  # audited once the transaction has ended (Services.unit)
        self.conflicts: list[ConflictNote] = []  # recorded once the transaction has ended (Services.unit)

    # The services, each made when first asked for (cached_property calls the class with the
    # unit): a request uses two or three of the nine, and making all of them was about 60 µs
    # of every unit. accounts: passwords, locks, invitations, TOTP (bridge.accounts); access:
    # the access type the mapping rules give, settled before commit.
    users = cached_property(UserService)
    groups = cached_property(GroupService)
    tokens = cached_property(TokenService)
    roles = cached_property(RoleService)
    scopes = cached_property(ScopeService)
    grants = cached_property(GrantService)
    customers = cached_property(CustomerService)
    accounts = cached_property(AccountService)
    access = cached_property(AccessService)

    def refuse(self, what: str, reason: str, target_type: str, target_id: str | None,
               target_name: str | None) -> Forbidden:
        """A Forbidden to raise, remembered for the audit log."""
        self.refusals.append(Refusal(what, reason, target_type, target_id, target_name))
        return Forbidden(reason)

    def note_conflict(self, kind: str, subject: str, holder: str, detail: str) -> None:
        """A write of the actor's source refused because ``holder`` (another source, a
        directory entry) holds ``subject``: shown on the status page once the unit ended."""
        self.conflicts.append(ConflictNote(kind, self.actor.source, subject, holder, detail))

    def may_grant_admin(self) -> bool:
        """Whether the actor's source may make a user an admin. Privilege belongs to the
        config: the local operator may; a SCIM client only when ``[scim.clients.NAME]``
        says ``admins = true``; an LDAP sync never (no directory attribute makes admins)."""
        return self._source_may("admins")

    def may_set_passwords(self) -> bool:
        """Whether the actor's source may set passwords of the users it owns: the local
        operator (admin API, CLI) may; a SCIM client when ``[scim.clients.NAME]`` says
        ``passwords = true``; an LDAP source never (its users' passwords live in the directory)."""
        return self._source_may("passwords")

    def may_name_customer(self, number: str) -> bool:
        """Whether the actor's source may link a user to the customer numbered ``number``
        (the link makes the user that customer's, with its rights-groups): the local
        operator may; a SCIM client only a number its ``[scim.clients.NAME] customers``
        lists (or ``["*"]``); other sources link customers only through the config's
        mapping rules, which do not ask."""
        source = self.actor.source
        if source.startswith(SCIM_PREFIX):
            return self.config.scim.client(source.removeprefix(SCIM_PREFIX)).may_name_customer(number)
        return True

    def _source_may(self, permission: Literal["admins", "passwords"]) -> bool:
        source = self.actor.source
        if source == LOCAL_SOURCE:
            return True
        if source.startswith(SCIM_PREFIX):
            return bool(getattr(self.config.scim.client(source.removeprefix(SCIM_PREFIX)), permission))
        return False

    def may_take_over(self, owner_source: str) -> bool:
        """Whether the actor's source may change identities owned by ``owner_source``."""
        return owner_source in self._takeover or "*" in self._takeover
