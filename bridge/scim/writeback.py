"""SCIM changes written back into LDAP (``[ldap.sources.writeback]``), after the request
committed: the store is the truth, so a directory that refuses a write is logged and
does not undo the SCIM change; the next change of the resource writes it again."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ldap3.core.exceptions import LDAPException

from bridge.ldap import writeback as ldap_writeback
from bridge.store.models import Group, User

if TYPE_CHECKING:
    from bridge.runtime import Runtime

log = logging.getLogger(__name__)
Members = tuple[set[str], set[str], set[str], set[str]]  # added users, removed users, added groups, removed groups


class Writeback:
    def __init__(self, rt: Runtime):
        self.rt = rt

    @staticmethod
    def wanted(rt: Runtime) -> bool:
        return any(source.writeback.enabled for source in rt.config.ldap.sources)

    def apply(self, what: str, row: User | Group, name: str, previous: str | None, members: Members | None) -> None:
        try:
            if what == "user":
                assert isinstance(row, User)
                ldap_writeback.writeback_user(self.rt, row)
            elif what == "user-removed":
                assert isinstance(row, User)
                ldap_writeback.writeback_user_removed(self.rt, row)
            elif what == "group":
                assert isinstance(row, Group)
                if members is None or previous is not None:
                    ldap_writeback.writeback_group(self.rt, row)
                if members is not None:
                    added_users, removed_users, added_groups, removed_groups = members
                    ldap_writeback.writeback_group_members(
                        self.rt, row, added_user_ids=added_users, removed_user_ids=removed_users,
                        added_group_ids=added_groups, removed_group_ids=removed_groups)
            elif what == "group-removed":
                assert isinstance(row, Group)
                ldap_writeback.writeback_group_removed(self.rt, row)
        except (ldap_writeback.WritebackFailed, LDAPException) as exc:
            log.warning("LDAP write-back of %s %r failed: %s", what, name, exc, extra={"what": what})
