"""Values a user's fields must be, checked for every source in the service layer, so that
no channel stores one that locks the user out or breaks a mail: addresses and networks of
an IP allow-list, IANA time zones, BCP 47 language tags."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm.attributes import instance_dict, instance_state

from bridge.services.errors import InvalidValue

if TYPE_CHECKING:
    from sqlalchemy import FromClause
    from sqlalchemy.orm import Session

#: well-formed BCP 47 language tags (RFC 5646 langtag: language, script, region, variants)
LANGUAGE_TAG = re.compile(
    r"^[A-Za-z]{2,3}(-[A-Za-z]{3}){0,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?(-([A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*$")


def ip_allowlist(value: Any) -> list[str]:
    """Each entry an IP address or network (``10.0.0.0/8``, ``2001:db8::/32``), written the
    canonical way; anything else names the entry."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise InvalidValue("ip_allowlist must be a list of IP addresses or networks", field="ip_allowlist")
    if len(value) > MAX_ALLOWLIST:
        raise InvalidValue(f"ip_allowlist holds more than {MAX_ALLOWLIST} entries (use networks)", field="ip_allowlist")
    out: dict[str, None] = {}
    for entry in value:
        try:
            network = ipaddress.ip_network(str(entry).strip(), strict=False)
        except ValueError:
            raise InvalidValue(f"ip_allowlist: {_short(entry)!r} is neither an IP address nor a network (CIDR)",
                               field="ip_allowlist") from None
        out.setdefault(str(network.network_address) if network.num_addresses == 1 else str(network))
    return list(out)


def _short(value: Any) -> str:
    """A refused value as an error repeats it: its first 64 characters."""
    text = str(value)
    return text if len(text) <= 64 else text[:64] + "..."


ZONE_SHAPE = re.compile(r"^(UTC|[A-Za-z_]+(/[A-Za-z0-9_+\-]+)+)$")


#: entries of one user's IP allow-list
MAX_ALLOWLIST = 1000


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def timezone(value: Any) -> str | None:
    """An IANA time zone name (``Europe/Berlin``), or None."""
    if value is None or value == "":
        return None
    name = str(value).strip()
    zones = _zones()
    known = name in zones if zones else bool(ZONE_SHAPE.match(name))  # no tz database here: its shape
    if not known:
        raise InvalidValue(f"timezone: {_short(name)!r} is no IANA time zone (like Europe/Berlin or UTC)",
                           field="timezone")
    return name


def language(value: Any) -> str | None:
    """A BCP 47 language tag (``de``, ``en-US``, ``zh-Hant-TW``), or None."""
    if value is None or value == "":
        return None
    tag = str(value).strip()
    if len(tag) > 35 or not LANGUAGE_TAG.match(tag):
        raise InvalidValue(f"preferred_language: {_short(tag)!r} is no BCP 47 language tag (like de or en-US)",
                           field="preferred_language")
    return tag


def fits_columns(table: FromClause, values: Mapping[str, Any]) -> None:
    """Refuse a text longer than its column, or holding a NUL, naming the field: every channel
    gets a clear 400 instead of what PostgreSQL would answer (an error, a 500) or SQLite would keep."""
    lengths = _column_lengths(table)
    for key, value in values.items():
        if isinstance(value, str):
            length = lengths.get(key)
            if length and len(value) > length:
                raise InvalidValue(f"{key}: longer than {length} characters", field=key)
            if "\x00" in value:
                raise InvalidValue(f"{key}: contains a NUL character", field=key)
        elif isinstance(value, dict | list):
            _refuse_nul(key, value)


def _refuse_nul(key: str, value: Any) -> None:
    """A column's value: no text in it holds a NUL, nor, in a JSON column's value (a user's
    SCIM or directory attributes), any string or key. PostgreSQL's json type keeps ``\u0000``
    but cannot compare or extract it (``attributes->>'title'``: an error for every filter that
    reads the attribute)."""
    found = unstorable(value, key)
    if found is not None:
        raise InvalidValue(f"{found[0]}: contains {found[1]}", field=key)


def unstorable(value: Any, path: str = "", *, surrogates: bool = False) -> tuple[str, str] | None:
    """(where, what) of the first string or key in ``value`` (JSON: strings, lists, dicts)
    that no store keeps as text: one holding a NUL, or with ``surrogates`` a lone surrogate
    (JSON's ``\ud800``, which no driver can encode); ``where`` is its path under ``path``
    (``a.b[2]``, the NUL shown as ``?``). None when every one is storable."""
    if isinstance(value, str):
        what = _unstorable_text(value, surrogates)
        return (path, what) if what else None
    if isinstance(value, dict):
        for name, item in value.items():
            here = f"{path}.{name}" if path else str(name)
            what = _unstorable_text(str(name), surrogates)
            if what:
                return here.replace("\x00", "?"), what
            found = unstorable(item, here, surrogates=surrogates)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = unstorable(item, f"{path}[{index}]", surrogates=surrogates)
            if found is not None:
                return found
    return None


def _unstorable_text(text: str, surrogates: bool) -> str | None:
    if "\x00" in text:
        return "a NUL character"
    if surrogates:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone surrogate (\\ud800-\\udfff)"
    return None


@cache
def _column_lengths(table: FromClause) -> dict[str, int | None]:
    """Column key -> its declared length (None: unbounded), read from the table once: a
    batched write checks 100,000s of rows against it."""
    return {column.key: getattr(column.type, "length", None) for column in table.columns}


def refuse_nul_on_flush(session: Session, _context: Any, _instances: Any) -> None:
    """Before a flush: no new or changed text of any ORM object holds a NUL, whichever service
    set it (a customer's name, a role's description, a scope's name), refused naming the field.
    PostgreSQL refuses NUL in text (an error mid-flush, a 500) and SQLite would keep it. Plain
    INSERTs of users and groups are checked by ``fits_columns``."""
    for obj in session.new:
        for key, value in instance_dict(obj).items():
            _refuse_nul(key, value)
    for obj in session.dirty:
        state = instance_state(obj)
        for key in state.committed_state:
            _refuse_nul(key, state.dict.get(key))
