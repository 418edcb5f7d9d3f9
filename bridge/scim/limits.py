"""Bounds on what one SCIM query may ask of the store, checked before a filter is parsed
or a page is read: an integer beyond any page (``startIndex=99999999999999999999``) or
a filter of thousands of terms, a megabyte long or nested hundreds deep would otherwise
reach the SQL layer (an overflow, SQLite's expression-depth limit) or the parser's
recursion and end as a 500. Each is a 400 naming the limit (``scim.max_filter_length``,
``scim.max_filter_terms``)."""

from __future__ import annotations

import re
from typing import Any

from scim2_models import InvalidFilterException, InvalidValueException

#: startIndex and count are 1-based positions and sizes: no page lies past 2^31
MAX_POSITION = 2**31 - 1
#: parentheses and brackets inside one another; no IdP filter nests more than a few
MAX_FILTER_DEPTH = 16
# counted generously: "1or" is "1 or" to a lenient parser; "color" and "north" are no operators
_LOGICAL = re.compile(r"(?<![a-z])(and|or|not)(?![a-z0-9_$-])", re.IGNORECASE)


def check_paging(query: dict[str, Any]) -> None:
    for key, value in query.items():
        if key.lower() not in ("startindex", "count"):
            continue
        text = str(value).strip()
        try:
            number = float(text.replace("_", ""))  # what int() or float() would still read
        except ValueError:
            continue  # not a number: the SCIM library answers for it
        if not abs(number) <= MAX_POSITION:  # also NaN and infinities
            raise InvalidValueException(detail=f"{key} is beyond {MAX_POSITION}")


def check_filter(text: str, max_length: int, max_terms: int) -> None:
    """Refuse a filter longer than ``max_length`` characters, with more than ``max_terms``
    comparisons (logical operators + 1, counted outside quoted values) or nested deeper
    than MAX_FILTER_DEPTH."""
    if len(text) > max_length:
        raise InvalidFilterException(detail=f"the filter is longer than {max_length} characters "
                                            "(scim.max_filter_length)")
    outside: list[str] = []
    depth = deepest = 0
    quoted = escaped = False
    for char in text:
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
                outside.append(" ")
            continue
        if char == '"':
            quoted = True
            continue
        if char in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]":
            depth -= 1
        outside.append(char)
    if deepest > MAX_FILTER_DEPTH:
        raise InvalidFilterException(detail=f"the filter nests deeper than {MAX_FILTER_DEPTH} levels")
    terms = len(_LOGICAL.findall("".join(outside))) + 1
    if terms > max_terms:
        raise InvalidFilterException(detail=f"the filter has more than {max_terms} terms (scim.max_filter_terms)")
