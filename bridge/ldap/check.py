"""``dirbridge check-config`` for an LDAP source: what a sync needs, tried the way a sync
does it (in the manner of Keycloak's "test connection / test authentication"): bind, then
search users_base and groups_base with their filters (a bounded count), and look at the
attributes the preset reads. A base with no user is an error here, as it is for the sync."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPNoSuchObjectResult, LDAPSizeLimitExceededResult

from bridge.config import LdapSourceConfig
from bridge.ldap.connection import connect
from bridge.ldap.errors import base_not_found, explain
from bridge.ldap.presets import AttributeMap, attribute_map

#: entries read per search: enough to see the attributes, bounded for a large directory
SAMPLE = 1000
#: user attributes a sync cannot do without
REQUIRED = ("unique_id", "user_name")
#: user attributes whose absence leaves a field empty (said, not failed)
OPTIONAL = ("email", "display_name", "given_name", "family_name")

Level = Literal["ok", "WARNING", "FAILED"]


@dataclass(frozen=True)
class Finding:
    level: Level
    text: str


def check_source(source: LdapSourceConfig) -> list[Finding]:
    """What a sync of ``source`` would meet, each as a line to show."""
    try:
        conn = connect(source)
    except LDAPException as exc:  # LdapProblem too: an explained LDAPException
        return [Finding("FAILED", explain(exc, source))]
    try:
        findings = [Finding("ok", f"bound as {_who(conn, source)}")]
        amap = attribute_map(source)
        findings += _users(conn, source, amap)
        if source.groups_base:
            findings += _groups(conn, source, amap)
        return findings
    except LDAPException as exc:  # LdapProblem too: an explained LDAPException
        return [*findings, Finding("FAILED", explain(exc, source))]
    finally:
        conn.unbind()


def _who(conn: ldap3.Connection, source: LdapSourceConfig) -> str:
    try:
        return str(conn.extend.standard.who_am_i() or source.bind_dn or "anonymous")
    except LDAPException:
        return source.bind_dn or "anonymous"


def _sample(conn: ldap3.Connection, source: LdapSourceConfig, key: str, base: str, search_filter: str,
            attributes: list[str]) -> tuple[list[dict[str, Any]], bool]:
    """Up to SAMPLE entries under ``base``, and whether there are more."""
    try:
        conn.search(base, search_filter, ldap3.SUBTREE, attributes=attributes, size_limit=SAMPLE)
        more = False
    except LDAPSizeLimitExceededResult:
        more = True
    except LDAPNoSuchObjectResult as exc:
        raise base_not_found(source, key, base, exc) from None
    entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
    return entries, more or len(entries) >= SAMPLE


def _count(entries: list[dict[str, Any]], more: bool) -> str:
    return f"more than {SAMPLE}" if more else str(len(entries))


def _users(conn: ldap3.Connection, source: LdapSourceConfig, amap: AttributeMap) -> list[Finding]:
    entries, more = _sample(conn, source, "users_base", source.users_base, amap.users_filter,
                            amap.user_attributes())
    where = f"under users_base {source.users_base!r} with users_filter {amap.users_filter!r}"
    if not entries:
        return [Finding("FAILED", f"no user {where}: a sync would fail without reading anyone; check "
                                  f"users_base and users_filter")]
    findings = [Finding("ok", f"{_count(entries, more)} users {where}")]
    for key in (*REQUIRED, *OPTIONAL):
        name = amap.core.get(key)
        if not name:
            continue
        lacking = sum(1 for e in entries if not _has(e, name))
        if not lacking:
            continue
        share = f"{lacking} of the {len(entries)} users read"
        if key in REQUIRED:
            findings.append(Finding("FAILED", f"{share} have no {name} ({key}): a sync skips them; set "
                                              f"attributes.{key} to the attribute your directory uses"))
        else:
            findings.append(Finding("WARNING", f"{share} have no {name} ({key}): it stays empty for them"
                                    + (" (the display name falls back to cn)" if key == "display_name" else "")))
    return findings


def _groups(conn: ldap3.Connection, source: LdapSourceConfig, amap: AttributeMap) -> list[Finding]:
    assert source.groups_base is not None
    names = [amap.core["unique_id"], amap.core["group_name"]]
    entries, more = _sample(conn, source, "groups_base", source.groups_base, amap.groups_filter, names)
    where = f"under groups_base {source.groups_base!r} with groups_filter {amap.groups_filter!r}"
    if not entries:
        return [Finding("WARNING", f"no group {where}: the sync reads users only")]
    return [Finding("ok", f"{_count(entries, more)} groups {where}")]


def _has(entry: dict[str, Any], name: str) -> bool:
    attributes = {k.lower(): v for k, v in (entry.get("attributes") or {}).items()}
    value = attributes.get(name.lower())
    return value not in (None, "", [], b"")
