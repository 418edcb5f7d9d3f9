"""Write-back: users and groups provisioned through SCIM, written into an LDAP subtree
for legacy applications that read LDAP. Opt-in per source (``[ldap.sources.writeback]``).

Call contract (for the SCIM provider), after the unit of work that changed the
store has committed, with the committed objects:

- ``writeback_user(rt, user, previous_user_name=None)`` after a user was created,
  replaced or patched; pass the old userName when it changed (the entry is renamed).
  An inactive user is disabled where the directory can show it (AD
  userAccountControl, 389-DS/FreeIPA nsAccountLock) and removed from the subtree
  on OpenLDAP; activating the user again writes it back.
- ``writeback_user_removed(rt, user_name)`` after a user was deleted.
- ``writeback_group(rt, group, previous_name=None)`` after a group was created or
  renamed; a new entry is written with the group's current members.
- ``writeback_group_members(rt, group, added_user_ids=..., removed_user_ids=...,
  added_group_ids=..., removed_group_ids=...)`` after a membership change: each
  member is one modify that adds or deletes a single ``member`` value, never a
  replace of the attribute (large groups hit server limits that way).
- ``writeback_group_removed(rt, display_name)`` after a group was deleted.

Pass the ids of members whose rows still exist; when a user is deleted,
``writeback_user_removed`` deletes the entry and the directory's referential
integrity (OpenLDAP refint/memberof, AD itself) drops its ``member`` values.

Only resources of SCIM sources (``source = "scim:..."``) are written; the others
are ignored, so calling for any user is safe. Each call writes to every source
with write-back enabled and raises ``WritebackFailed`` (naming the source, never
a password) when one of them fails; the store is not touched, so the caller logs
it and carries on, and the next change of the resource writes it again.
Entries are named ``uid=USERNAME`` (``cn=`` on Active Directory) under
``writeback.users_base`` and ``cn=DISPLAYNAME`` under ``writeback.groups_base``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import ldap3
from ldap3.core.exceptions import LDAPException
from sqlalchemy import select

from bridge.config import LdapSourceConfig
from bridge.ldap.connection import connect
from bridge.ldap.presets import PRESETS, Preset
from bridge.store.models import Group, GroupGroupMember, GroupUserMember, User

if TYPE_CHECKING:
    from bridge.runtime import Runtime

log = logging.getLogger(__name__)

#: groupOfNames needs at least one member (RFC 4519, OpenLDAP): an empty group holds the empty DN.
EMPTY_MEMBER = ""
#: presets whose group class may have no member: AD's group, and 389-DS's (so FreeIPA's)
#: groupOfNames, where ``member`` is a MAY; an empty group there is written without the placeholder.
MEMBER_OPTIONAL = frozenset({"active_directory", "389ds", "freeipa"})
AD_NORMAL, AD_DISABLED = 512, 514


class WritebackFailed(Exception):
    pass


def _targets(rt: Runtime) -> list[LdapSourceConfig]:
    return [s for s in rt.config.ldap.sources if s.writeback.enabled]


def _is_scim(source: str) -> bool:
    return source.startswith("scim:")


@contextmanager
def _connection(source: LdapSourceConfig) -> Iterator[ldap3.Connection]:
    try:
        conn = connect(source)
    except LDAPException as exc:
        raise WritebackFailed(f"write-back to {source.name}: {type(exc).__name__}: {exc}") from None
    try:
        yield conn
    except LDAPException as exc:
        raise WritebackFailed(f"write-back to {source.name}: {type(exc).__name__}: {exc}") from None
    finally:
        conn.unbind()


_RDN_SPECIAL = frozenset('\\,+"<>;=')


def escape_rdn(value: str) -> str:
    """An RDN value as RFC 4514 writes it: the specials escaped, NUL as the hex pair
    ``\\00``, a leading ``#`` or space and a trailing space escaped. (ldap3's escape_rdn
    writes NUL as a backslash and the NUL itself, which is no valid DN, and fails on an
    empty value.) Every character of the value stays part of the value: none can end the
    RDN, add one (``+``) or move the entry (``,``)."""
    out: list[str] = []
    last = len(value) - 1
    for i, char in enumerate(value):
        if char in _RDN_SPECIAL or (i == 0 and char in "# ") or (i == last and char == " "):
            out.append("\\" + char)
        elif char == "\x00":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)


def user_dn(source: LdapSourceConfig, user_name: str) -> str:
    preset = PRESETS[source.preset]
    return f"{preset.writeback_user_rdn}={escape_rdn(user_name)},{source.writeback.users_base}"


def group_dn(source: LdapSourceConfig, display_name: str) -> str:
    return f"cn={escape_rdn(display_name)},{source.writeback.groups_base}"


def _user_attributes(preset: Preset, user: User) -> dict[str, Any]:
    name = user.display_name or " ".join(p for p in (user.given_name, user.family_name) if p) or user.user_name
    attrs: dict[str, Any] = {
        "cn": name if preset.writeback_user_rdn != "cn" else user.user_name,
        "sn": user.family_name or name,
        "givenName": user.given_name,
        "displayName": name,
        "mail": user.email,
    }
    if preset.name == "active_directory":
        attrs["sAMAccountName"] = user.user_name[:20]
        attrs["userAccountControl"] = str(AD_NORMAL if user.active else AD_DISABLED)
    else:
        attrs["uid"] = user.user_name
        if preset.writeback_can_disable:
            attrs["nsAccountLock"] = None if user.active else "TRUE"
    return attrs


def _unusable_ad_password() -> bytes:
    """A random password nobody learns, for a new AD user: Windows refuses an enabled
    account without a password (0000052D), and one with PASSWD_NOTREQD and no password
    could log in with an empty one. Written over the source's TLS (AD takes
    ``unicodePwd`` over an encrypted connection only), never logged or stored."""
    import secrets

    password = secrets.token_urlsafe(32) + "Aa1!"  # every character class AD's complexity rule asks for
    return f'"{password}"'.encode("utf-16-le")


def _read(conn: ldap3.Connection, dn: str, attributes: list[str]) -> dict[str, Any] | None:
    try:
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=attributes)
    except ldap3.core.exceptions.LDAPNoSuchObjectResult:
        return None
    return dict(conn.response[0]["attributes"]) if conn.response else None


def _first(values: Any) -> Any:
    if isinstance(values, list):
        return values[0] if values else None
    return values


# -- users ---------------------------------------------------------------------

def writeback_user(rt: Runtime, user: User, previous_user_name: str | None = None) -> None:
    """Create, update, rename, disable or remove the user's entry (see the module doc)."""
    if not _is_scim(user.source):
        return
    for source in _targets(rt):
        preset = PRESETS[source.preset]
        with _connection(source) as conn:
            dn = user_dn(source, user.user_name)
            if previous_user_name and previous_user_name != user.user_name:
                old = user_dn(source, previous_user_name)
                if _read(conn, old, ["1.1"]) is not None:
                    conn.modify_dn(old, _rdn_of(dn), delete_old_dn=True)
            if not user.active and not preset.writeback_can_disable:
                _delete(conn, dn)
                continue
            wanted = _user_attributes(preset, user)
            current = _read(conn, dn, list(wanted))
            if current is None:
                attributes = {k: v for k, v in wanted.items() if v not in (None, "")}
                if preset.name == "active_directory":
                    attributes["unicodePwd"] = _unusable_ad_password()
                conn.add(dn, list(preset.writeback_user_classes), attributes)
                continue
            changes: dict[str, list[tuple[str, list[str]]]] = {}
            for key, value in wanted.items():
                have = _first(current.get(key))
                if value in (None, "") and have not in (None, ""):
                    changes[key] = [(ldap3.MODIFY_DELETE, [])]
                elif value not in (None, "") and str(value) != str(have):
                    changes[key] = [(ldap3.MODIFY_REPLACE, [value])]
            if changes:
                conn.modify(dn, changes)


def _rdn_of(dn: str) -> str:
    """The first RDN of a DN whose value may hold escaped commas."""
    i = 0
    while i < len(dn):
        if dn[i] == "\\":
            i += 2
            continue
        if dn[i] == ",":
            return dn[:i]
        i += 1
    return dn


def _delete(conn: ldap3.Connection, dn: str) -> None:
    try:
        conn.delete(dn)
    except ldap3.core.exceptions.LDAPNoSuchObjectResult:
        pass


def writeback_user_removed(rt: Runtime, user_name: str) -> None:
    for source in _targets(rt):
        with _connection(source) as conn:
            _delete(conn, user_dn(source, user_name))


# -- groups --------------------------------------------------------------------

def _member_dns(rt: Runtime, source: LdapSourceConfig, user_ids: Iterable[str],
                group_ids: Iterable[str], *, only_present: bool = True) -> list[str]:
    """Entry DNs of the members of SCIM sources (with ``only_present``: those that have
    an entry, so not the inactive users of a directory that removes them)."""
    preset = PRESETS[source.preset]
    dns: list[str] = []
    with rt.store.read() as session:
        user_ids, group_ids = list(user_ids), list(group_ids)
        if user_ids:
            for user in session.scalars(select(User).where(User.id.in_(user_ids))):
                if _is_scim(user.source) and (user.active or preset.writeback_can_disable or not only_present):
                    dns.append(user_dn(source, user.user_name))
        if group_ids:
            for group in session.scalars(select(Group).where(Group.id.in_(group_ids))):
                if _is_scim(group.source):
                    dns.append(group_dn(source, group.display_name))
    return dns


def writeback_group(rt: Runtime, group: Group, previous_name: str | None = None) -> None:
    """Create the group's entry with its current members, or rename it."""
    if not _is_scim(group.source):
        return
    with rt.store.read() as session:
        user_ids = list(session.scalars(select(GroupUserMember.user_id).where(GroupUserMember.group_id == group.id)))
        group_ids = list(session.scalars(select(GroupGroupMember.child_group_id)
                                         .where(GroupGroupMember.group_id == group.id)))
    for source in _targets(rt):
        preset = PRESETS[source.preset]
        dn = group_dn(source, group.display_name)
        with _connection(source) as conn:
            if previous_name and previous_name != group.display_name:
                old = group_dn(source, previous_name)
                if _read(conn, old, ["1.1"]) is not None:
                    conn.modify_dn(old, _rdn_of(dn), delete_old_dn=True)
            if _read(conn, dn, ["1.1"]) is not None:
                continue
            members = sorted(set(_member_dns(rt, source, user_ids, group_ids)))
            attrs: dict[str, Any] = {"cn": group.display_name}
            if preset.name == "active_directory":
                attrs["sAMAccountName"] = group.display_name[:256]
            if members or preset.name not in MEMBER_OPTIONAL:
                attrs["member"] = members or [EMPTY_MEMBER]
            conn.add(dn, list(preset.writeback_group_classes), attrs)


def writeback_group_members(rt: Runtime, group: Group, *, added_user_ids: Iterable[str] = (),
                            removed_user_ids: Iterable[str] = (), added_group_ids: Iterable[str] = (),
                            removed_group_ids: Iterable[str] = ()) -> None:
    """Add and delete single ``member`` values, one modify each."""
    if not _is_scim(group.source):
        return
    added_user_ids, removed_user_ids = list(added_user_ids), list(removed_user_ids)
    added_group_ids, removed_group_ids = list(added_group_ids), list(removed_group_ids)
    for source in _targets(rt):
        preset = PRESETS[source.preset]
        dn = group_dn(source, group.display_name)
        added = _member_dns(rt, source, added_user_ids, added_group_ids)
        removed = _member_dns(rt, source, removed_user_ids, removed_group_ids, only_present=False)
        needs_placeholder = preset.name not in MEMBER_OPTIONAL
        with _connection(source) as conn:
            missing = _read(conn, dn, ["1.1"]) is None
            for member in ([] if missing else added):
                _member_op(conn, dn, ldap3.MODIFY_ADD, member)
            if added and needs_placeholder and not missing:
                _member_op(conn, dn, ldap3.MODIFY_DELETE, EMPTY_MEMBER)
            for member in ([] if missing else removed):
                try:
                    _member_op(conn, dn, ldap3.MODIFY_DELETE, member)
                except ldap3.core.exceptions.LDAPObjectClassViolationResult:
                    # the last member of a groupOfNames: keep the group valid with the placeholder
                    _member_op(conn, dn, ldap3.MODIFY_ADD, EMPTY_MEMBER)
                    _member_op(conn, dn, ldap3.MODIFY_DELETE, member)
        if missing:
            writeback_group(rt, group)


def _member_op(conn: ldap3.Connection, dn: str, operation: str, member: str) -> None:
    """One value added or deleted; "already there" and "already gone" are success."""
    try:
        conn.modify(dn, {"member": [(operation, [member])]})
    except (ldap3.core.exceptions.LDAPAttributeOrValueExistsResult,
            ldap3.core.exceptions.LDAPNoSuchAttributeResult):
        pass


def writeback_group_removed(rt: Runtime, display_name: str) -> None:
    for source in _targets(rt):
        with _connection(source) as conn:
            _delete(conn, group_dn(source, display_name))
