"""Reading a source: users and groups as plain records, streamed from paged searches.

Searches always name their attributes (never ``*``) and filter values are
always escaped: parsing is what costs with ldap3 (6-10k entries/s), so the
less each entry carries, the faster a full scan is.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import ldap3
from ldap3.utils.conv import escape_filter_chars

from bridge.config import LdapSourceConfig
from bridge.ldap.dn import dn_key, is_under
from bridge.ldap.presets import AttributeMap

RANGE_RE = re.compile(r";range=(\d+)-(\d+|\*)$", re.IGNORECASE)
MAX_RANGE_ROUNDS = 10_000


class UserEntry(NamedTuple):
    """One user entry as read (a tuple: a full scan makes, pickles and unpickles 100,000s)."""

    source_id: str
    dn: str
    user_name: str | None
    display_name: str | None
    given_name: str | None
    family_name: str | None
    email: str | None
    active: bool
    attributes: dict[str, Any]
    modified: str | None


@dataclass(frozen=True)
class GroupEntry:
    source_id: str
    dn: str
    name: str | None
    member_dns: list[str] = field(default_factory=list)
    modified: str | None = None


def _first(attrs: Any, name: str) -> Any:
    if not name:
        return None
    value = attrs.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value if value not in ("", b"") else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _lowered(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """An entry's attributes keyed by lower-case name (as ldap3's case-insensitive dict
    matches them): looked up many times per entry, and a plain dict is what the
    reading process gets from ldap3 (bridge.ldap.readahead turns that dict off)."""
    return {key.strip().lower(): value for key, value in attrs.items()}


class EntryParser:
    """The attribute map resolved once into lower-case names, to turn search entries
    into ``UserEntry``/``GroupEntry`` (a full scan parses 100,000s of them)."""

    def __init__(self, amap: AttributeMap):
        def lower(key: str) -> str:
            return (amap.attr(key) or "").lower()

        self.unique_id = lower("unique_id")
        self.binary_id = amap.preset.binary_unique_id or self.unique_id == "objectguid"
        self.user_name, self.display_name = lower("user_name"), lower("display_name")
        self.given_name, self.family_name, self.email = lower("given_name"), lower("family_name"), lower("email")
        self.disabled, self.modified, self.group_name = lower("disabled"), lower("modified"), lower("group_name")
        self.extras = [(key, name.lower()) for key, name in amap.extras.items()]
        self.member_attributes = [name.lower() for name in amap.member_attributes]

    def source_id(self, entry: Mapping[str, Any], attrs: Mapping[str, Any]) -> str | None:
        """The entry's stable id; objectGUID (binary) is shown as a UUID."""
        if self.binary_id:
            raw = _lowered(entry.get("raw_attributes") or {}).get(self.unique_id) or []
            if raw and len(raw[0]) == 16:
                return str(uuid.UUID(bytes_le=raw[0]))
            if raw:
                return str(raw[0].hex())
            return None
        return _text(_first(attrs, self.unique_id))

    def user(self, entry: Mapping[str, Any]) -> UserEntry | None:
        attrs = _lowered(entry["attributes"])
        source_id = self.source_id(entry, attrs)
        if not source_id:
            return None
        extras: dict[str, Any] = {}
        for key, name in self.extras:
            values = attrs.get(name)
            if isinstance(values, list):
                values = [_text(v) for v in values]
                if len(values) == 1:
                    extras[key] = values[0]
                elif values:
                    extras[key] = values
            elif values not in (None, ""):
                extras[key] = _text(values)
        given, family = _text(_first(attrs, self.given_name)), _text(_first(attrs, self.family_name))
        display = _text(_first(attrs, self.display_name)) or _text(_first(attrs, "cn"))  # person's mandatory name
        if display is None and (given or family):
            display = " ".join(p for p in (given, family) if p)
        return UserEntry(
            source_id=source_id,
            dn=entry["dn"],
            user_name=_text(_first(attrs, self.user_name)),
            display_name=display,
            given_name=given,
            family_name=family,
            email=_text(_first(attrs, self.email)),
            active=not is_disabled(attrs, self.disabled),
            attributes=extras,
            modified=_text(_first(attrs, self.modified)),
        )

    def group(self, conn: ldap3.Connection, entry: Mapping[str, Any]) -> GroupEntry | None:
        attrs = _lowered(entry["attributes"])
        source_id = self.source_id(entry, attrs)
        if not source_id:
            return None
        return GroupEntry(
            source_id=source_id,
            dn=entry["dn"],
            name=_text(_first(attrs, self.group_name)),
            member_dns=self._member_values(conn, entry["dn"], attrs),
            modified=_text(_first(attrs, self.modified)),
        )

    def _member_values(self, conn: ldap3.Connection, dn: str, attrs: Mapping[str, Any]) -> list[str]:
        """Every member DN, following AD's range retrieval (``member;range=0-1499``) and
        dropping groupOfUniqueNames' optional ``#'0101'B`` suffix."""
        members: list[str] = []
        for name in self.member_attributes:
            members.extend(_text(v) or "" for v in attrs.get(name) or [])
            for key in [k for k in attrs if k.startswith(name + ";range=")]:
                if not attrs[key]:
                    continue  # ldap3 lists an asked-for range the server did not send as empty
                members.extend(_text(v) or "" for v in attrs[key])
                members.extend(_more_ranges(conn, dn, name, key))
        return [m.split("#", 1)[0] if "#'" in m else m for m in members if m]


def is_disabled(attrs: Any, name: str) -> bool:
    """AD: bit 2 of userAccountControl; others: a flag such as nsAccountLock=TRUE or a
    lock time (pwdAccountLockedTime) being present. ``attrs`` is keyed like ``name``."""
    if not name:
        return False
    value = _text(_first(attrs, name))
    if value is None:
        return False
    if name.lower() == "useraccountcontrol":
        try:
            return bool(int(value) & 0x2)
        except ValueError:
            return False
    return value.strip().lower() not in ("", "false", "0", "no")


def _more_ranges(conn: ldap3.Connection, dn: str, name: str, key: str) -> Iterator[str]:
    """Fetch the next ranges until the server answers with an open end (``-*``)."""
    match = RANGE_RE.search(key)
    for _ in range(MAX_RANGE_ROUNDS):
        if match is None or match.group(2) == "*":
            return
        start = int(match.group(2)) + 1
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[f"{name};range={start}-*"])
        if not conn.response:
            return
        attrs = conn.response[0].get("attributes", {})
        # Only keys with values: ldap3 adds the asked-for key empty when the server answered
        # with another range (``1500-2999`` for ``1500-*``).
        keys = [k for k in attrs if k.lower().startswith(name.lower() + ";range=") and attrs[k]]
        if not keys:
            return
        yield from (_text(v) or "" for v in attrs[keys[0]])
        match = RANGE_RE.search(keys[0])


def changed_since_filter(base_filter: str, amap: AttributeMap, since: str | None) -> str:
    if since is None:
        return base_filter
    return f"(&{base_filter}({amap.attr('modified')}>={escape_filter_chars(since)}))"


class Reader:
    """Paged searches over one bound connection, skipping the write-back subtree
    (entries dirbridge itself wrote must not come back as directory users)."""

    def __init__(self, conn: ldap3.Connection, source: LdapSourceConfig, amap: AttributeMap):
        self.conn = conn
        # ldap3's own range walk (auto_range) would run before ours and leave both the
        # merged ``member`` and the ranged key behind: members twice, ranges read twice.
        conn.auto_range = False
        # ldap3 fills absent asked-for attributes in as empty lists, and with auto_range off it
        # then deletes the plain name of a ranged answer (``member`` beside
        # ``member;range=0-1499``) that it never filled in: a KeyError in ldap3 2.9.1. The
        # parser takes an absent attribute as empty anyway.
        conn.empty_attributes = False
        self.source = source
        self.amap = amap
        self._parser = EntryParser(amap)
        wb = source.writeback
        self._skip = [dn_key(b) for b in (wb.users_base, wb.groups_base) if wb.enabled and b]

    def _skipped(self, dn: str) -> bool:
        if not self._skip:
            return False
        key = dn_key(dn)
        return any(is_under(key, base) for base in self._skip)

    def _paged(self, key: str, base: str, search_filter: str, attributes: list[str]) -> Iterator[dict[str, Any]]:
        """The entries under ``base`` (the value of config key ``key``, named when the
        directory has no such entry)."""
        from ldap3.core.exceptions import LDAPNoSuchObjectResult

        from bridge.ldap.errors import base_not_found

        try:
            for entry in self.conn.extend.standard.paged_search(
                base, search_filter, ldap3.SUBTREE, attributes=attributes,
                paged_size=self.source.page_size, generator=True,
            ):
                if entry.get("type") == "searchResEntry" and not self._skipped(entry["dn"]):
                    yield entry
        except LDAPNoSuchObjectResult as exc:
            raise base_not_found(self.source, key, base, exc) from None

    def users(self, since: str | None = None) -> Iterator[UserEntry]:
        search_filter = changed_since_filter(self.amap.users_filter, self.amap, since)
        for entry in self._paged("users_base", self.source.users_base, search_filter, self.amap.user_attributes()):
            user = self._parser.user(entry)
            if user is not None:
                yield user

    def groups(self, since: str | None = None) -> Iterator[GroupEntry]:
        if not self.source.groups_base:
            return
        search_filter = changed_since_filter(self.amap.groups_filter, self.amap, since)
        for entry in self._paged("groups_base", self.source.groups_base, search_filter,
                                 self.amap.group_attributes()):
            group = self._parser.group(self.conn, entry)
            if group is not None:
                yield group

    def group_at(self, dn: str) -> GroupEntry | None:
        """One group, read by its DN (None when it is gone)."""
        from ldap3.core.exceptions import LDAPNoSuchObjectResult

        try:
            self.conn.search(dn, self.amap.groups_filter, ldap3.BASE, attributes=self.amap.group_attributes())
        except LDAPNoSuchObjectResult:
            return None
        entries = [e for e in self.conn.response or [] if e.get("type") == "searchResEntry"]
        return self._parser.group(self.conn, entries[0]) if entries else None

    def removed_since(self, accesslog_base: str, since: str) -> list[str]:
        """DNs deleted, or moved out of the synced subtrees, since ``since``, from
        OpenLDAP's accesslog (plain searches of ``auditDelete``/``auditModRDN``)."""
        search_filter = (f"(&(|(objectClass=auditDelete)(objectClass=auditModRDN))(reqResult=0)"
                         f"(reqStart>={escape_filter_chars(since)}))")
        bases = [dn_key(b) for b in (self.source.users_base, self.source.groups_base) if b]
        gone: list[str] = []
        for entry in self._paged("accesslog_base", accesslog_base, search_filter,
                                 ["objectClass", "reqDN", "reqNewRDN", "reqNewSuperior", "reqStart"]):
            attrs = entry["attributes"]
            dn = _text(_first(attrs, "reqDN"))
            if not dn:
                continue
            classes = {str(c).lower() for c in attrs.get("objectClass") or []}
            if "auditmodrdn" in classes:
                superior = _text(_first(attrs, "reqNewSuperior"))
                if superior is None:
                    continue  # renamed in place: still in scope, the change scan sees it
                if any(is_under(dn_key(superior), b) for b in bases):
                    continue  # moved within the synced subtrees
            gone.append(dn)
        return gone
