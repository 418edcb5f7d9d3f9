"""Searches at the server root and cursor paging, in SQL.

A search at the root (RFC 7644 §3.4.3: ``POST /.search``, ``GET /?filter=``)
filters, sorts and pages Users and Groups as one collection: a UNION ALL of
``(type, id, missing, value)`` rows, one SELECT per resource type with that
type's WHERE clause (bridge.scim.filters), ordered and cut in SQL. An
attribute a resource type does not declare matches none of its resources and
sorts as a missing value (RFC 7644 §3.4.2.1).

The order of the collection is the key ``(missing, sort value, resource type,
id)``: the sort value as bridge.scim.filters.order_by computes it for each type
(case-insensitive strings, missing values last when ascending and first when
descending), then the resource type name and the id, ascending whatever the
sort order, to break ties (as order_by does for one type, so paging by index
and by cursor give the same order). Without ``sortBy`` the key is ``(resource
type, id)``: Groups before Users at the root.

Cursors (RFC 9865) page by keyset on that key: a position holds the key of the
last resource of a page (``next``) or of the first one (``previous``), and the
next page is the resources after (or before) it. A resource that exists during
the whole paging and keeps its sort value is returned exactly once, whatever
is created or deleted meanwhile. scim2-server seals the positions into cursors
the client cannot read or forge; ``Collection.read`` still checks what comes
back, and raises InvalidCursorException for anything it did not issue.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

from scim2_models import InvalidCursorException, Resource, SearchRequest
from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    String,
    and_,
    case,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.sql.sqltypes import NullType

from bridge.scim.filters import SqlDialect, order_by, where_clause
from bridge.store.models import Group, User

NEXT = "next"
PREVIOUS = "previous"


@dataclass(frozen=True)
class Searched:
    """One resource type of a search: its name, its model and its table."""

    name: str
    model: type[Resource[Any]]
    table: type[User | Group]
    visible: ColumnElement[bool]  # the rows the client may see (bridge.services.visibility)


@dataclass(frozen=True)
class Anchor:
    """The key of the resource a cursor page starts after (``forward``) or ends before."""

    forward: bool
    missing: bool
    value: Any
    type: str
    id: str


class Collection:
    """The resources of one or several types that a search request matches, keyed."""

    def __init__(self, dialect: SqlDialect, searched: list[Searched], request: SearchRequest[Any]):
        self.request = request
        self.root = len(searched) > 1
        self.sorted = request.sort_by is not None
        self.descending = self.sorted and request.sort_order == SearchRequest.SortOrder.descending
        self.names = {s.name for s in searched}
        branches = [self._branch(dialect, s) for s in searched]
        # The first SELECT of a UNION types its columns (how values are bound and read back):
        # put first a type whose sort value has a type, when one has.
        branches.sort(key=lambda branch: isinstance(branch.selected_columns.value.type, NullType))
        compound = branches[0] if len(branches) == 1 else union_all(*branches)
        self.found = compound.subquery("found")

    def _branch(self, dialect: SqlDialect, searched: Searched) -> Select[Any]:
        missing, value = self._sort_value(dialect, searched.model)
        query = select(literal(searched.name, String()).label("type"), searched.table.id.label("id"),
                       missing.label("missing"), value.label("value")).where(searched.visible)
        if self.request.filter is not None:
            query = query.where(where_clause(dialect, searched.model, self.request.filter.ast))
        return query

    def _sort_value(self, dialect: SqlDialect, model: type[Resource[Any]]) -> tuple[Any, Any]:
        """(1 when the value is missing else 0, the value compared), as order_by sorts ascending."""
        if not self.sorted:
            return literal(0), null()
        ascending = self.request.model_copy(update={"sort_order": SearchRequest.SortOrder.ascending})
        terms = order_by(dialect, model, ascending)
        if len(terms) == 1:  # [id]: the type does not declare the attribute, or cannot sort on it
            return literal(1), null()
        missing, value, _ = terms  # [missing, value, id]
        return missing, value

    # -- order and keyset ----------------------------------------------------------

    def _columns(self) -> list[tuple[Any, bool]]:
        """The columns of the key, each with whether it sorts descending."""
        c = self.found.c
        sort = [(c.missing, self.descending), (c.value, self.descending)] if self.sorted else []
        return [*sort, *([(c.type, False)] if self.root else []), (c.id, False)]

    def order(self, forward: bool = True) -> list[Any]:
        """ORDER BY the key, in the order (``forward``) or against it."""
        return [column.desc() if descending == forward else column.asc()
                for column, descending in self._columns()]

    def beyond(self, anchor: Anchor, forward: bool, *, inclusive: bool = False) -> ColumnElement[bool]:
        """The resources after the anchor in the order (``forward``) or before it, and the
        anchor itself when ``inclusive``: the key compared lexicographically, spelled out
        because the sort value is NULL when missing and the direction may be descending."""
        values = {"missing": int(anchor.missing), "value": anchor.value, "type": anchor.type, "id": anchor.id}
        # Every resource without a value has a NULL value: the missing flag alone orders them.
        pairs = [(column, descending, literal(values[column.name], column.type))
                 for column, descending in self._columns() if not (column.name == "value" and anchor.missing)]

        def chain(index: int) -> ColumnElement[bool]:
            column, descending, value = pairs[index]
            strictly = column > value if forward != descending else column < value
            if index == len(pairs) - 1:
                return or_(strictly, column == value) if inclusive else strictly
            return or_(strictly, and_(column == value, chain(index + 1)))

        return chain(0)

    # -- queries -------------------------------------------------------------------

    def count_query(self, anchor: Anchor | None) -> Select[Any]:
        """The number of matching resources; with an anchor, also how many lie behind the
        page (before it going forward, after it going back), to know the other cursor."""
        columns: list[Any] = [func.count()]
        if anchor is not None:
            behind = self.beyond(anchor, not anchor.forward, inclusive=True)
            columns.append(func.count(case((behind, 1))))
        return select(*columns).select_from(self.found)

    def page_query(self, anchor: Anchor | None, *, offset: int = 0, limit: int | None = None) -> Select[Any]:
        """The keys of a page: from ``offset`` in the order, or beyond the anchor (in the
        anchor's direction; a backward page comes reversed)."""
        c = self.found.c
        query = select(c.type, c.id, c.missing, c.value)
        forward = anchor is None or anchor.forward
        if anchor is not None:
            query = query.where(self.beyond(anchor, forward))
        query = query.order_by(*self.order(forward))
        if offset:
            query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        return query

    # -- positions -----------------------------------------------------------------

    def position(self, direction: str, key: Row[Any]) -> dict[str, Any]:
        """The position (JSON) of the page after (``next``) or before (``previous``) a key."""
        missing = self.sorted and bool(key.missing)
        value = _encode(key.value) if self.sorted and not missing else None
        return {"d": direction, "m": missing, "k": value, "t": key.type, "i": key.id}

    def read(self, position: Any) -> Anchor:
        """The anchor of a position this collection gave; InvalidCursorException otherwise."""
        try:
            direction, missing, value, type_, id_ = (
                position["d"], position["m"], position["k"], position["t"], position["i"])
        except (TypeError, KeyError, IndexError):
            raise InvalidCursorException(detail="the cursor does not hold a position of this search") from None
        if (direction not in (NEXT, PREVIOUS) or not isinstance(missing, bool) or type_ not in self.names
                or not isinstance(id_, str) or not id_ or len(id_) > 256):
            raise InvalidCursorException(detail="the cursor does not hold a position of this search")
        value = _decode(value)
        if missing or not self.sorted:
            if value is not None or (missing and not self.sorted):
                raise InvalidCursorException(detail="the cursor does not hold a position of this search")
        elif value is None or not _fits(value, self.found.c.value.type):
            raise InvalidCursorException(detail="the cursor does not hold a position of this search")
        return Anchor(direction == NEXT, missing, value, type_, id_)


def _encode(value: Any) -> Any:
    """A sort value as JSON holds it."""
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"a cursor cannot hold a sort value of type {type(value).__name__}")


def _decode(value: Any) -> Any:
    """The sort value _encode gave; InvalidCursorException for anything else."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict) and set(value) == {"datetime"} and isinstance(value["datetime"], str):
        try:
            decoded = dt.datetime.fromisoformat(value["datetime"])
        except ValueError:
            decoded = None
        if decoded is not None and decoded.tzinfo is not None:
            return decoded
    raise InvalidCursorException(detail="the cursor does not hold a position of this search")


def _fits(value: Any, sql_type: Any) -> bool:
    """Whether a value from a cursor can be compared with the sort column (a string where
    a timestamp is compared would be an SQL error on PostgreSQL, not a 400)."""
    try:
        expected = sql_type.python_type
    except NotImplementedError:  # an untyped SQL function (SQLite's scim_key, json_extract)
        return isinstance(value, (str, bool, int, float))
    if expected is bool or isinstance(value, bool):
        return expected is bool and isinstance(value, bool)
    if expected in (int, float):
        return isinstance(value, (int, float))
    if isinstance(expected, type) and issubclass(expected, enum.Enum):
        return isinstance(value, str)
    return isinstance(value, expected)
