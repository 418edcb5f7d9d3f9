"""``column IN (values)`` with every value in one bound parameter, or in chunks.

SQLAlchemy sends ``column.in_(values)`` as one parameter per value, and a statement may
carry at most 65,535 on PostgreSQL (psycopg refuses it before the server sees it) and
SQLITE_MAX_VARIABLE_NUMBER on SQLite (32,766 in a default build). The sets of group ids a
walk of nested groups carries grow with the directory, so they go as one parameter: an
array compared with ``= ANY`` on PostgreSQL, a JSON array read by ``json_each`` on SQLite.
The statement's compiled form is cached like any other (the values are its parameter).
Where a statement keeps SQLAlchemy's one parameter per value (an ORM ``in_``, an expanding
bind), ``in_chunks`` cuts the values into statements of IN_CHUNK each.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Boolean, Select, String, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator, TypeEngine

T = TypeVar("T")
#: values per ``IN (...)`` of one parameter each: well under SQLite's variable limit
IN_CHUNK = 900


def in_chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of ``size``, in order: the values of one statement each."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


class StringList(TypeDecorator[list[str]]):
    """A list of strings as one parameter: an array on PostgreSQL, JSON text elsewhere."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(String()))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return json.dumps(value)


class Among(ColumnElement[bool]):
    """True where ``column`` is one of ``values`` (strings); rendered per dialect below."""

    type = Boolean()
    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("values", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: ColumnElement[Any], values: Iterable[str]):
        self.column = column
        self.values: BindParameter[list[str]] = bindparam(None, [str(v) for v in values], type_=StringList())


def among(column: Any, values: Iterable[str]) -> ColumnElement[bool]:
    """``column IN values``, the values as one parameter whatever their number."""
    return Among(column, values)


@compiles(Among)
def _json_each(element: Among, compiler: SQLCompiler, **kw: Any) -> str:
    listed: Select[tuple[Any]] = select(literal_column("value")).select_from(func.json_each(element.values))
    return compiler.process(element.column.in_(listed), **kw)


@compiles(Among, "postgresql")
def _any_array(element: Among, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column == any_(element.values), **kw)
