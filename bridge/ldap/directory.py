"""Reading a source: users and groups as plain records, streamed from paged searches.

Searches always name their attributes (never ``*``) and filter values are
always escaped: parsing is what costs with ldap3 (6-10k entries/s), so the
less each entry carries, the faster a full scan is.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import ldap3
from ldap3.utils.conv import escape_filter_chars

from bridge.config import LdapSourceConfig
from bridge.ldap.dn import dn_key, is_under
from bridge.ldap.presets import AttributeMap

RANGE_RE = re.compile(r";range=(\d+)-(\d+|\*)$", re.IGNORECASE)
MAX_RANGE_ROUNDS = 10_000


@dataclass(frozen=True)
class UserEntry:
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


def unique_id(entry: dict[str, Any], amap: AttributeMap) -> str | None:
    """The entry's stable id; objectGUID (binary) is shown as a UUID."""
    name = amap.attr("unique_id")
    if amap.preset.binary_unique_id or name.lower() == "objectguid":
        raw = entry.get("raw_attributes", {}).get(name) or []
        if raw and len(raw[0]) == 16:
            return str(uuid.UUID(bytes_le=raw[0]))
        if raw:
            return raw[0].hex()
        return None
    return _text(_first(entry["attributes"], name))


def is_disabled(attrs: Any, name: str) -> bool:
    """AD: bit 2 of userAccountControl; others: a flag such as nsAccountLock=TRUE or a
    lock time (pwdAccountLockedTime) being present."""
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


def parse_user(entry: dict[str, Any], amap: AttributeMap) -> UserEntry | None:
    source_id = unique_id(entry, amap)
    if not source_id:
        return None
    attrs = entry["attributes"]
    extras: dict[str, Any] = {}
    for key, name in amap.extras.items():
        values = attrs.get(name)
        if isinstance(values, list):
            values = [_text(v) for v in values]
            if len(values) == 1:
                extras[key] = values[0]
            elif values:
                extras[key] = values
        elif values not in (None, ""):
            extras[key] = _text(values)
    given, family = _text(_first(attrs, amap.attr("given_name"))), _text(_first(attrs, amap.attr("family_name")))
    display = _text(_first(attrs, amap.attr("display_name")))
    if display is None and (given or family):
        display = " ".join(p for p in (given, family) if p)
    return UserEntry(
        source_id=source_id,
        dn=entry["dn"],
        user_name=_text(_first(attrs, amap.attr("user_name"))),
        display_name=display,
        given_name=given,
        family_name=family,
        email=_text(_first(attrs, amap.attr("email"))),
        active=not is_disabled(attrs, amap.attr("disabled")),
        attributes=extras,
        modified=_text(_first(attrs, amap.attr("modified"))),
    )


def _member_values(conn: ldap3.Connection, entry: dict[str, Any], amap: AttributeMap) -> list[str]:
    """Every member DN, following AD's range retrieval (``member;range=0-1499``) and
    dropping groupOfUniqueNames' optional ``#'0101'B`` suffix."""
    attrs = entry["attributes"]
    members: list[str] = []
    for name in amap.member_attributes:
        members.extend(_text(v) or "" for v in attrs.get(name) or [])
        ranged = [k for k in attrs if k.lower().startswith(name.lower() + ";range=")]
        for key in ranged:
            members.extend(_text(v) or "" for v in attrs[key])
            members.extend(_more_ranges(conn, entry["dn"], name, key))
    return [m.split("#", 1)[0] if "#'" in m else m for m in members if m]


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
        keys = [k for k in attrs if k.lower().startswith(name.lower() + ";range=")]
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
        self.source = source
        self.amap = amap
        wb = source.writeback
        self._skip = [dn_key(b) for b in (wb.users_base, wb.groups_base) if wb.enabled and b]

    def _skipped(self, dn: str) -> bool:
        if not self._skip:
            return False
        key = dn_key(dn)
        return any(is_under(key, base) for base in self._skip)

    def _paged(self, base: str, search_filter: str, attributes: list[str]) -> Iterator[dict[str, Any]]:
        for entry in self.conn.extend.standard.paged_search(
            base, search_filter, ldap3.SUBTREE, attributes=attributes,
            paged_size=self.source.page_size, generator=True,
        ):
            if entry.get("type") == "searchResEntry" and not self._skipped(entry["dn"]):
                yield entry

    def users(self, since: str | None = None) -> Iterator[UserEntry]:
        search_filter = changed_since_filter(self.amap.users_filter, self.amap, since)
        for entry in self._paged(self.source.users_base, search_filter, self.amap.user_attributes()):
            user = parse_user(entry, self.amap)
            if user is not None:
                yield user

    def groups(self, since: str | None = None) -> Iterator[GroupEntry]:
        if not self.source.groups_base:
            return
        search_filter = changed_since_filter(self.amap.groups_filter, self.amap, since)
        for entry in self._paged(self.source.groups_base, search_filter, self.amap.group_attributes()):
            source_id = unique_id(entry, self.amap)
            if not source_id:
                continue
            yield GroupEntry(
                source_id=source_id,
                dn=entry["dn"],
                name=_text(_first(entry["attributes"], self.amap.attr("group_name"))),
                member_dns=_member_values(self.conn, entry, self.amap),
                modified=_text(_first(entry["attributes"], self.amap.attr("modified"))),
            )

    def removed_since(self, accesslog_base: str, since: str) -> list[str]:
        """DNs deleted, or moved out of the synced subtrees, since ``since``, from
        OpenLDAP's accesslog (plain searches of ``auditDelete``/``auditModRDN``)."""
        search_filter = (f"(&(|(objectClass=auditDelete)(objectClass=auditModRDN))(reqResult=0)"
                         f"(reqStart>={escape_filter_chars(since)}))")
        bases = [dn_key(b) for b in (self.source.users_base, self.source.groups_base) if b]
        gone: list[str] = []
        for entry in self._paged(accesslog_base, search_filter,
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
