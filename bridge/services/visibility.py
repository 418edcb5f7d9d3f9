"""What a source may see of the store: its own users and groups, those an ownership rule
lets it take over, and the portal's groups its users are in.

A SCIM client reads through this (bridge.scim.storage): the rest is invisible, 404 by
id and absent from lists and member lists, so one IdP learns nothing of another's
people, of the directory's, or of the local admins. An IdP's ``userName eq`` probe still
finds the users it may adopt. A creation that collides with an invisible name is refused
(409) without saying whose the name is. The local operator and the LDAP sync see
everything (``Visibility.everything``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, exists, select, true
from sqlalchemy.orm import aliased

from bridge.config import OwnershipConfig
from bridge.services.actor import SCIM_PREFIX
from bridge.store.models import Group, GroupKind, GroupUserMember, User

PORTAL_KINDS = (GroupKind.portal, GroupKind.customer_rights)


def adoptable(ownership: OwnershipConfig, source: str) -> set[str]:
    """The sources whose identities ``source`` may take over (``[[ownership.rules]]``; "*": all)."""
    return {owner for rule in ownership.rules if rule.source == source for owner in rule.may_take_over}


@dataclass(frozen=True)
class Visibility:
    """``sources``: the sources whose users and groups are visible; None for all of them."""

    sources: frozenset[str] | None

    @classmethod
    def everything(cls) -> Visibility:
        return cls(None)

    @classmethod
    def of(cls, source: str, ownership: OwnershipConfig) -> Visibility:
        """A SCIM client sees its own source and what its ownership rules let it take over;
        every other writer (the local operator, an LDAP sync) sees everything."""
        if not source.startswith(SCIM_PREFIX):
            return cls.everything()
        taken = adoptable(ownership, source)
        return cls.everything() if "*" in taken else cls(frozenset({source, *taken}))

    def sees_source(self, source: str) -> bool:
        return self.sources is None or source in self.sources

    def users(self) -> ColumnElement[bool]:
        """The users table's rows this source may see."""
        return true() if self.sources is None else User.source.in_(self.sources)

    def groups(self) -> ColumnElement[bool]:
        """The groups table's rows this source may see: its own and adoptable ones, and a
        portal group or customer rights-group that holds one of its visible users."""
        if self.sources is None:
            return true()
        member, person = aliased(GroupUserMember), aliased(User)
        holds_one = exists(select(member.user_id).join(person, person.id == member.user_id)
                           .where(member.group_id == Group.id, person.source.in_(self.sources)))
        return Group.source.in_(self.sources) | (Group.kind.in_(PORTAL_KINDS) & holds_one)
