"""Write-back: users and groups provisioned through SCIM, written into an LDAP subtree
for legacy applications that read LDAP. Opt-in per source (``[ldap.sources.writeback]``).

Write-back owns only what it created. Each entry it adds is recorded with the
directory's stable id (``writeback_entries``: entryUUID, nsUniqueId, objectGUID,
ipaUniqueID); it modifies, renames, fills and deletes only recorded entries, found
again by that id (so a name another entry has since taken is never mistaken for
ours). Before it adds or renames an entry it asks the directory whether the name is
taken, in the write-back subtree or the source's own base, by an equality search, so
the directory's matching rules decide (case, spacing, Unicode forms); a name taken by
an entry it did not create is a conflict (the status page, the audit log,
``dirbridge_conflicts_open{kind="writeback"}``) and nothing is written.

Call contract (for the SCIM provider), after the unit of work that changed the
store has committed, with the committed objects:

- ``writeback_user(rt, user)`` after a user was created, replaced or patched (a new
  userName renames the recorded entry).
  An inactive user is disabled where the directory can show it (AD
  userAccountControl, 389-DS/FreeIPA nsAccountLock) and removed from the subtree
  on OpenLDAP; activating the user again writes it back.
- ``writeback_user_removed(rt, user)`` after a user was deleted (its recorded entry goes).
- ``writeback_group(rt, group)`` after a group was created or renamed; a new entry is
  written with the group's current members.
- ``writeback_group_members(rt, group, added_user_ids=..., removed_user_ids=...,
  added_group_ids=..., removed_group_ids=...)`` after a membership change: each
  member is one modify that adds or deletes a single ``member`` value, never a
  replace of the attribute (large groups hit server limits that way).
- ``writeback_group_removed(rt, group)`` after a group was deleted.

Members are the recorded entries of the member users and groups, never another
entry. Pass the ids of members whose rows still exist; when a user is deleted,
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
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import ldap3
from ldap3.core.exceptions import LDAPEntryAlreadyExistsResult, LDAPException, LDAPNoSuchObjectResult
from ldap3.utils.conv import escape_filter_chars
from sqlalchemy import select

from bridge.config import LdapSourceConfig
from bridge.ldap.connection import connect
from bridge.ldap.directory import EntryParser
from bridge.ldap.dn import dn_key
from bridge.ldap.presets import PRESETS, Preset, attribute_map
from bridge.names import cleaned
from bridge.services import writeback_entries as entries
from bridge.services.actor import Actor
from bridge.services.conflicts import WRITEBACK, ConflictNote
from bridge.store.models import Group, GroupGroupMember, GroupUserMember, User, WritebackEntry

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


# -- what write-back created ------------------------------------------------------

USER, GROUP = "user", "group"
#: one write-back of a resource at a time in this process: two requests for a new user must
#: not both find the name free and both add (the second would report its twin as a conflict)
_STRIPES = [threading.Lock() for _ in range(64)]


def _stripe(resource_id: str) -> threading.Lock:
    return _STRIPES[zlib.crc32(resource_id.encode()) % len(_STRIPES)]


class _Entries:
    """The entries one LDAP source holds for write-back, on one connection: found by the
    stable id recorded when they were added, checked against the directory's own
    matching before a name is used, and conflicts reported instead of touching others'."""

    def __init__(self, rt: Runtime, source: LdapSourceConfig, conn: ldap3.Connection):
        self.rt, self.source, self.conn = rt, source, conn
        self.preset = PRESETS[source.preset]
        amap = attribute_map(source)
        self.parser = EntryParser(amap)
        self.id_attribute = amap.attr("unique_id")
        self.user_name_attribute = amap.attr("user_name")

    # records

    def record(self, kind: str, resource_id: str) -> WritebackEntry | None:
        with self.rt.store.read() as session:
            return session.get(WritebackEntry, (self.source.name, kind, resource_id))

    def recorded_dns(self, kind: str, resource_ids: Iterable[str]) -> list[str]:
        """Where the recorded entries of ``resource_ids`` are now (each checked by its
        stable id, so an entry someone else put at a recorded DN is never named)."""
        ids = list(resource_ids)
        if not ids:
            return []
        with self.rt.store.read() as session:
            rows = list(session.scalars(select(WritebackEntry).where(
                WritebackEntry.ldap_source == self.source.name, WritebackEntry.kind == kind,
                WritebackEntry.resource_id.in_(ids))))
        return [dn for row in rows if (dn := self.locate(row)) is not None]

    def remember(self, kind: str, resource_id: str, dn: str) -> None:
        entry_id = self.entry_id(dn)
        if entry_id is None:
            raise WritebackFailed(f"write-back to {self.source.name}: {dn} has no {self.id_attribute}")
        entries.remember(self.rt.store, self.source.name, kind, resource_id, entry_id, dn)

    def moved(self, row: WritebackEntry, dn: str) -> None:
        entries.moved(self.rt.store, row.ldap_source, row.kind, row.resource_id, dn)

    def forget(self, kind: str, resource_id: str) -> None:
        entries.forget(self.rt.store, self.source.name, kind, resource_id)

    # the directory

    def entry_id(self, dn: str) -> str | None:
        try:
            self.conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[self.id_attribute])
        except LDAPNoSuchObjectResult:
            return None
        if not self.conn.response:
            return None
        entry = self.conn.response[0]
        return self.parser.source_id(entry, entry.get("attributes") or {})

    def _id_filter(self, entry_id: str) -> str:
        if self.parser.binary_id:
            try:
                raw = uuid.UUID(entry_id).bytes_le
            except ValueError:
                raw = bytes.fromhex(entry_id)
            escaped = "".join(f"\\{b:02x}" for b in raw)
            return f"({self.id_attribute}={escaped})"
        return f"({self.id_attribute}={escape_filter_chars(entry_id)})"

    def locate(self, row: WritebackEntry) -> str | None:
        """Where the recorded entry is now: at its DN when that entry still has the recorded
        id; else wherever the id is (an administrator moved it); None when it is gone."""
        if self.entry_id(row.dn) == row.entry_id:
            return row.dn
        base = self.source.writeback.users_base if row.kind == USER else self.source.writeback.groups_base
        assert base is not None
        found = self._search(base, self._id_filter(row.entry_id))
        if found:
            self.moved(row, found[0][0])
            return found[0][0]
        return None

    def _search(self, base: str, search_filter: str) -> list[tuple[str, str | None]]:
        """(DN, stable id) of the entries under ``base`` that ``search_filter`` matches."""
        try:
            self.conn.search(base, search_filter, ldap3.SUBTREE, attributes=[self.id_attribute], size_limit=10)
        except LDAPNoSuchObjectResult:
            return []
        except ldap3.core.exceptions.LDAPSizeLimitExceededResult:
            pass  # ldap3 keeps what came before the limit
        return [(e["dn"], self.parser.source_id(e, e.get("attributes") or {}))
                for e in self.conn.response or [] if e.get("type") == "searchResEntry"]

    def holder(self, kind: str, name: str, own_id: str | None = None) -> str | None:
        """The DN of an entry that is not ours (``own_id``) and carries ``name`` the way
        the directory matches it (its equality rule: case, spaces, Unicode forms), in the
        write-back subtree or the source's own base; None when the name is free."""
        # the name as sent and as the identity key sees it (NFKC, no invisible characters,
        # one space): a directory that keeps a zero-width space still meets the plain name
        values = list(dict.fromkeys(v for v in (name, cleaned(name)) if v))
        if kind == USER:
            if self.preset.name == "active_directory":
                pairs = [(self.preset.writeback_user_rdn, v) for v in values] + [("sAMAccountName", v[:20])
                                                                                  for v in values]
            else:
                attrs = sorted({self.preset.writeback_user_rdn, self.user_name_attribute} - {""})
                pairs = [(attr, v) for attr in attrs for v in values]
            bases = [self.source.writeback.users_base, self.source.users_base]
        else:
            pairs = [("cn", v) for v in values]
            bases = [self.source.writeback.groups_base, self.source.groups_base or self.source.users_base]
        clauses = [f"({attr}={escape_filter_chars(v)})" for attr, v in pairs]
        search_filter = clauses[0] if len(clauses) == 1 else f"(|{''.join(clauses)})"
        for base in dict.fromkeys(b for b in bases if b):
            for dn, entry_id in self._search(base, search_filter):
                if own_id is None or entry_id != own_id:
                    return dn
        return None

    # conflicts

    def conflict(self, row: User | Group, name: str, holder_dn: str, what: str) -> None:
        detail = (f"{row.source}'s {_kind(row)} {name!r}: {holder_dn} in LDAP source {self.source.name!r} was not "
                  f"created by write-back, so it is not {what}")
        if what == "deleted":
            detail += (f"; the {_kind(row)} is gone or inactive here, so if that entry was its (written back "
                       "before dirbridge recorded the entries it creates), delete it by hand")
        log.warning("write-back conflict: %s", detail, extra={"ldap_source": self.source.name})
        self.rt.services.record_conflicts(_actor(self.source, row), [
            ConflictNote(WRITEBACK, row.source, name, f"{holder_dn} (LDAP source {self.source.name})", detail)])

    def resolved(self, row: User | Group, name: str) -> None:
        self.rt.services.resolve_conflicts(_actor(self.source, row), WRITEBACK, row.source, [name])

    # writes

    def rename(self, row: WritebackEntry, dn: str, wanted_dn: str, resource: User | Group, name: str) -> str | None:
        """Give the recorded entry at ``dn`` the RDN of ``wanted_dn`` in the same parent;
        the new DN, or None (a conflict) when another entry has the name."""
        if dn_key(_rdn_of(dn)) == dn_key(_rdn_of(wanted_dn)):
            return dn
        holder = self.holder(row.kind, name, own_id=row.entry_id)
        if holder is not None:
            self.conflict(resource, name, holder, "renamed over")
            return None
        self.conn.modify_dn(dn, _rdn_of(wanted_dn), delete_old_dn=True)
        new_dn = f"{_rdn_of(wanted_dn)},{dn[len(_rdn_of(dn)) + 1:]}"
        self.moved(row, new_dn)
        return new_dn

    def add(self, kind: str, resource: User | Group, name: str, dn: str, classes: list[str],
            attributes: dict[str, Any]) -> bool:
        """Add a new entry when the directory has none of that name; record it."""
        holder = self.holder(kind, name)
        if holder is not None:
            self.conflict(resource, name, holder, "overwritten")
            return False
        try:
            self.conn.add(dn, classes, attributes)
        except LDAPEntryAlreadyExistsResult:  # a name the directory holds outside the bases searched
            self.conflict(resource, name, dn, "overwritten")
            return False
        self.remember(kind, resource.id, dn)
        return True


def _kind(row: User | Group) -> str:
    return USER if isinstance(row, User) else GROUP


def _actor(source: LdapSourceConfig, row: User | Group) -> Actor:
    return Actor(name=f"writeback:{source.name}", source=row.source, channel="writeback")


def _each(rt: Runtime, resource_id: str, write: Callable[[_Entries], None]) -> None:
    """``write`` for each write-back source, on a connection of its own (an LDAP error is
    WritebackFailed, naming the source), one write of ``resource_id`` at a time."""
    with _stripe(resource_id):
        for source in _targets(rt):
            with _connection(source) as conn:
                write(_Entries(rt, source, conn))


# -- users ---------------------------------------------------------------------

def writeback_user(rt: Runtime, user: User) -> None:
    """Create, update, rename, disable or remove the user's entry (see the module doc)."""
    if not _is_scim(user.source):
        return
    _each(rt, user.id, lambda entries: _write_user(entries, user))


def _write_user(entries: _Entries, user: User) -> None:
    preset, source, conn = entries.preset, entries.source, entries.conn
    row = entries.record(USER, user.id)
    dn = entries.locate(row) if row is not None else None
    if row is not None and dn is None:
        entries.forget(USER, user.id)  # deleted by someone else: written anew below, if the name is free
        row = None
    if not user.active and not preset.writeback_can_disable:
        _remove_entry(entries, USER, user, user.user_name)
        return
    wanted_dn = user_dn(source, user.user_name)
    wanted = _user_attributes(preset, user)
    if row is None or dn is None:
        attributes = {k: v for k, v in wanted.items() if v not in (None, "")}
        if preset.name == "active_directory":
            attributes["unicodePwd"] = _unusable_ad_password()
        if entries.add(USER, user, user.user_name, wanted_dn, list(preset.writeback_user_classes), attributes):
            entries.resolved(user, user.user_name)
        return
    renamed = entries.rename(row, dn, wanted_dn, user, user.user_name)
    if renamed is None:
        return
    current = _read(conn, renamed, list(wanted)) or {}
    changes: dict[str, list[tuple[str, list[str]]]] = {}
    for key, value in wanted.items():
        have = _first(current.get(key))
        if value in (None, "") and have not in (None, ""):
            changes[key] = [(ldap3.MODIFY_DELETE, [])]
        elif value not in (None, "") and str(value) != str(have):
            changes[key] = [(ldap3.MODIFY_REPLACE, [value])]
    if changes:
        conn.modify(renamed, changes)
    entries.resolved(user, user.user_name)


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
    except LDAPNoSuchObjectResult:
        pass


def writeback_user_removed(rt: Runtime, user: User) -> None:
    """Delete the entry write-back created for the (deleted) user; no other entry."""
    _remove(rt, USER, user)


def _remove(rt: Runtime, kind: str, row: User | Group) -> None:
    if not _is_scim(row.source):
        return
    name = row.user_name if isinstance(row, User) else row.display_name
    _each(rt, row.id, lambda entries: _remove_entry(entries, kind, row, name))


def _remove_entry(entries: _Entries, kind: str, row: User | Group, name: str) -> None:
    """Delete the recorded entry of ``row``. An entry of its name that write-back did
    not create stays, and is a conflict: it may be one an older version wrote back (no
    record), left behind for legacy applications to trust."""
    recorded = entries.record(kind, row.id)
    dn = entries.locate(recorded) if recorded is not None else None
    if dn is not None:
        _delete(entries.conn, dn)
    if recorded is not None:
        entries.forget(kind, row.id)
    left = entries.holder(kind, name)
    if left is not None:
        entries.conflict(row, name, left, "deleted")
    else:
        entries.resolved(row, name)


# -- groups --------------------------------------------------------------------

def _member_dns(entries: _Entries, user_ids: Iterable[str], group_ids: Iterable[str]) -> list[str]:
    """The recorded entries of the members: write-back puts no other entry into a group."""
    return entries.recorded_dns(USER, user_ids) + entries.recorded_dns(GROUP, group_ids)


def writeback_group(rt: Runtime, group: Group) -> None:
    """Create the group's entry with its current members, or rename it."""
    if not _is_scim(group.source):
        return
    with rt.store.read() as session:
        user_ids = list(session.scalars(select(GroupUserMember.user_id).where(GroupUserMember.group_id == group.id)))
        group_ids = list(session.scalars(select(GroupGroupMember.child_group_id)
                                         .where(GroupGroupMember.group_id == group.id)))
    _each(rt, group.id, lambda entries: _write_group(entries, group, user_ids, group_ids))


def _write_group(entries: _Entries, group: Group, user_ids: list[str], group_ids: list[str]) -> None:
    preset = entries.preset
    row = entries.record(GROUP, group.id)
    dn = entries.locate(row) if row is not None else None
    wanted_dn = group_dn(entries.source, group.display_name)
    if row is not None and dn is not None:
        if entries.rename(row, dn, wanted_dn, group, group.display_name) is not None:
            entries.resolved(group, group.display_name)
        return
    if row is not None:
        entries.forget(GROUP, group.id)
    members = sorted(set(_member_dns(entries, user_ids, group_ids)))
    attrs: dict[str, Any] = {"cn": group.display_name}
    if preset.name == "active_directory":
        attrs["sAMAccountName"] = group.display_name[:256]
    if members or preset.name not in MEMBER_OPTIONAL:
        attrs["member"] = members or [EMPTY_MEMBER]
    if entries.add(GROUP, group, group.display_name, wanted_dn, list(preset.writeback_group_classes), attrs):
        entries.resolved(group, group.display_name)


def writeback_group_members(rt: Runtime, group: Group, *, added_user_ids: Iterable[str] = (),
                            removed_user_ids: Iterable[str] = (), added_group_ids: Iterable[str] = (),
                            removed_group_ids: Iterable[str] = ()) -> None:
    """Add and delete single ``member`` values of the group's recorded entry, one modify
    each; a group without one is written whole (or reported as a conflict)."""
    if not _is_scim(group.source):
        return
    added_user_ids, removed_user_ids = list(added_user_ids), list(removed_user_ids)
    added_group_ids, removed_group_ids = list(added_group_ids), list(removed_group_ids)
    missing = False

    def members(entries: _Entries) -> None:
        nonlocal missing
        row = entries.record(GROUP, group.id)
        dn = entries.locate(row) if row is not None else None
        if dn is None:
            missing = True
            return
        added = _member_dns(entries, added_user_ids, added_group_ids)
        removed = _member_dns(entries, removed_user_ids, removed_group_ids)
        needs_placeholder = entries.preset.name not in MEMBER_OPTIONAL
        conn = entries.conn
        for member in added:
            _member_op(conn, dn, ldap3.MODIFY_ADD, member)
        if added and needs_placeholder:
            _member_op(conn, dn, ldap3.MODIFY_DELETE, EMPTY_MEMBER)
        for member in removed:
            try:
                _member_op(conn, dn, ldap3.MODIFY_DELETE, member)
            except ldap3.core.exceptions.LDAPObjectClassViolationResult:
                # the last member of a groupOfNames: keep the group valid with the placeholder
                _member_op(conn, dn, ldap3.MODIFY_ADD, EMPTY_MEMBER)
                _member_op(conn, dn, ldap3.MODIFY_DELETE, member)

    _each(rt, group.id, members)
    if missing:
        writeback_group(rt, group)


def _member_op(conn: ldap3.Connection, dn: str, operation: str, member: str) -> None:
    """One value added or deleted; "already there" and "already gone" are success."""
    try:
        conn.modify(dn, {"member": [(operation, [member])]})
    except (ldap3.core.exceptions.LDAPAttributeOrValueExistsResult,
            ldap3.core.exceptions.LDAPNoSuchAttributeResult):
        pass


def writeback_group_removed(rt: Runtime, group: Group) -> None:
    """Delete the entry write-back created for the (deleted) group; no other entry."""
    _remove(rt, GROUP, group)
