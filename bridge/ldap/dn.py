"""DN comparison: servers re-escape DNs their own way (slapd returns ``cn=Smith\\2C John``
for ``cn=Smith\\, John``), so DNs are compared as parsed values, never as strings."""

from __future__ import annotations

import re

from ldap3.utils.dn import parse_dn

_HEX = frozenset("0123456789abcdefABCDEF")
_SPECIAL = re.compile(r'[\\"+#;<>]')  # escapes, quotes, multi-valued RDNs: the parser's work
# RDNs of ``type=value`` with no "=" inside the value and no white space at either end
# of type or value: what the common DN looks like once casefolded, and its own key
_RDN = r"[^=,\s]+=(?:[^=,\s](?:[^=,]*[^=,\s])?)?"
_CANONICAL = re.compile(f"{_RDN}(?:,{_RDN})*")


def dn_key(dn: str) -> str:
    """A canonical form of ``dn``: attribute types and values casefolded, values
    unescaped, multi-valued RDNs sorted. Equal keys mean the same entry."""
    if not _SPECIAL.search(dn):
        # The common case (no escapes, no multi-valued RDN) without the slow parser.
        folded = dn.casefold()
        if _CANONICAL.fullmatch(folded):
            return folded  # one "=" per RDN, nothing to strip: already canonical
        parts = []
        for rdn in dn.split(","):
            attr, _, value = rdn.partition("=")
            parts.append(f"{attr.strip().casefold()}={_escape(value.strip().casefold())}")
        return ",".join(parts)
    rdns: list[str] = []
    current: list[str] = []
    for attr, value, separator in parse_dn(dn, escape=False, strip=True):
        current.append(f"{attr.strip().casefold()}={_escape(_unescape(value).casefold())}")
        if separator != "+":
            rdns.append("+".join(sorted(current)))
            current = []
    if current:
        rdns.append("+".join(sorted(current)))
    return ",".join(rdns)


def _escape(value: str) -> str:
    """Keep the canonical form unambiguous: separators inside values are escaped."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("+", "\\+").replace("=", "\\=")


def _unescape(value: str) -> str:
    """RFC 4514: ``\\,`` is ``,`` and ``\\C3\\BC`` is ``ü`` (hex pairs are UTF-8 bytes)."""
    if "\\" not in value:
        return value
    out = bytearray()
    i = 0
    while i < len(value):
        pair = value[i + 1: i + 3]
        if value[i] == "\\" and len(pair) == 2 and set(pair) <= _HEX:
            out.append(int(pair, 16))
            i += 3
        elif value[i] == "\\" and i + 1 < len(value):
            out += value[i + 1].encode("utf-8")
            i += 2
        else:
            out += value[i].encode("utf-8")
            i += 1
    return out.decode("utf-8", "replace")


def is_under(dn_or_key: str, base_key: str) -> bool:
    """Whether the entry (a DN key) is ``base_key`` or below it."""
    return dn_or_key == base_key or dn_or_key.endswith("," + base_key)
