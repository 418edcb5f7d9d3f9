"""``column IN (values)`` with every value in one bound parameter.

SQLAlchemy sends ``column.in_(values)`` as one parameter per value, and a statement may
carry at most 65,535 on PostgreSQL (psycopg refuses it before the server sees it) and
SQLITE_MAX_VARIABLE_NUMBER on SQLite (32,766 in a default build). The sets of group ids a
walk of nested groups carries grow with the directory, so they go as one parameter: an
array compared with ``= ANY`` on PostgreSQL, a JSON array read by ``json_each`` on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Boolean, Select, String, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement


class Among(ColumnElement[bool]):
    """True where ``column`` is one of ``values`` (strings); rendered per dialect below."""

    type = Boolean()
    inherit_cache = False  # the values are the statement's; a cached form would not be reused

    def __init__(self, column: ColumnElement[Any], values: Iterable[str]):
        self.column = column
        self.values = [str(value) for value in values]


def among(column: Any, values: Iterable[str]) -> ColumnElement[bool]:
    """``column IN values``, the values as one parameter whatever their number."""
    return Among(column, values)


@compiles(Among)
def _json_each(element: Among, compiler: SQLCompiler, **kw: Any) -> str:
    values = bindparam(None, json.dumps(element.values), type_=String())
    listed: Select[tuple[Any]] = select(literal_column("value")).select_from(func.json_each(values))
    return compiler.process(element.column.in_(listed), **kw)


@compiles(Among, "postgresql")
def _any_array(element: Among, compiler: SQLCompiler, **kw: Any) -> str:
    values = bindparam(None, element.values, type_=ARRAY(String()))
    return compiler.process(element.column == any_(values), **kw)
