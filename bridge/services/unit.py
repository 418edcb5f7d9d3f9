"""A unit of work: one write transaction, one actor, every service on it.

SCIM Bulk and LDAP sync batches group many changes in one unit, so a batch is
applied whole or not at all.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from bridge.config import Config, OwnershipConfig
from bridge.services.accounts import AccountService
from bridge.services.actor import Actor
from bridge.services.changes import ChangeLog
from bridge.services.customers import CustomerService
from bridge.services.grants import GrantService
from bridge.services.groups import GroupService
from bridge.services.roles import RoleService
from bridge.services.scopes import ScopeService
from bridge.services.tokens import TokenService
from bridge.services.users import UserService


class UnitOfWork:
    def __init__(self, session: Session, actor: Actor, ownership: OwnershipConfig, config: Config | None = None):
        self.session = session
        self.actor = actor
        self.config = config or Config(ownership=ownership)
        self.changes = ChangeLog(session)  # what check caches must drop, written at commit
        self._takeover = {
            owner for rule in ownership.rules if rule.source == actor.source for owner in rule.may_take_over
        }
        self.users = UserService(self)
        self.groups = GroupService(self)
        self.tokens = TokenService(self)
        self.roles = RoleService(self)
        self.scopes = ScopeService(self)
        self.grants = GrantService(self)
        self.customers = CustomerService(self)
        self.accounts = AccountService(self)  # passwords, locks, invitations, TOTP (bridge.accounts)

    def may_take_over(self, owner_source: str) -> bool:
        """Whether the actor's source may change identities owned by ``owner_source``."""
        return owner_source in self._takeover or "*" in self._takeover
