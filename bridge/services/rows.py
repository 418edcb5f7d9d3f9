"""New rows as plain dicts, for the batched writes of the service layer.

A batch (an LDAP page of new users, a sync's new groups) is inserted with one
executemany of plain rows instead of an ORM object and flush per row. For the
stored row to equal what the ORM writes, every column is filled in the way the
ORM fills it: the column's default when the caller gives no value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from operator import is_, itemgetter
from typing import Any

from sqlalchemy import Dialect, Table, insert
from sqlalchemy.orm import Session


class RowDefaults:
    """The column defaults of one table, read from the model once: fixed values (None
    where a column has none) and callables (an id, a timestamp, a fresh ``[]``)."""

    def __init__(self, table: Table):
        self.fixed: dict[str, Any] = {}
        self.called: dict[str, Callable[[Any], Any]] = {}
        for column in table.columns:
            default = column.default
            if default is None:
                self.fixed[column.key] = None
            elif default.is_clause_element or default.is_sequence:
                continue  # the database fills it in
            elif default.is_callable:
                self.called[column.key] = default.arg  # type: ignore[attr-defined]  # SQLAlchemy wraps fn() as fn(ctx)
            else:
                self.fixed[column.key] = default.arg  # type: ignore[attr-defined]

    def new_row(self) -> dict[str, Any]:
        """Every column at its default, callables called for this row."""
        row = dict(self.fixed)
        for key, make in self.called.items():
            row[key] = make(None)
        return row


_UNSET = object()


class _InsertPlan:
    """An INSERT of a fixed set of columns compiled for one dialect, with each column's
    bind processor (JSON, timestamps, enums, booleans) looked up once."""

    def __init__(self, table: Table, keys: tuple[str, ...], dialect: Dialect):
        compiled = insert(table).compile(dialect=dialect, column_keys=list(keys))
        self.sql = compiled.string
        self.positional = compiled.positional
        names = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
        self.usable = sorted(names) == sorted(keys) and not compiled.prefetch and not compiled.postfetch
        self.names = names
        self.processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) if self.usable else None
                           for name in names]

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The DBAPI parameters of ``rows``, made a column at a time: the values taken and
        turned into columns in C (itemgetter, zip), each processed column run through its
        processor (None too, as SQLAlchemy does: a JSON column may store 'null'), and the
        rows put back together (zip). A processor runs once for a column that holds one
        object in every row (None in most of a new row's columns, a batch's one timestamp,
        True) and not again for the same object as the row before's: its answer depends
        on the value alone."""
        take = itemgetter(*self.names)
        if len(self.names) > 1:
            columns: list[Sequence[Any]] = list(zip(*map(take, rows), strict=True))
        else:
            columns = [list(map(take, rows))]
        for i, process in enumerate(self.processors):
            if process is not None:
                columns[i] = _processed(columns[i], process)
        if self.positional:
            return list(zip(*columns, strict=True))
        names = self.names
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _processed(values: Sequence[Any], process: Callable[[Any], Any]) -> list[Any]:
    """``[process(v) for v in values]``, asking ``process`` once per run of one object."""
    first = values[0]
    if all(map(is_, values, repeat(first))):  # one object in the whole column
        return [process(first)] * len(values)
    out: list[Any] = []
    last, answer = _UNSET, None
    for value in values:
        if value is not last:
            last, answer = value, process(value)
        out.append(answer)
    return out


class BulkInsert:
    """One executemany INSERT of plain rows into a table. The parameters are made by the
    columns' own bind processors, exactly as SQLAlchemy makes them, but without its
    generic per-row machinery, which costs more than the database's own work on a
    batch of thousands. Every row must have the same keys (those of ``RowDefaults``)."""

    def __init__(self, table: Table):
        self.table = table
        self._plans: dict[tuple[str, tuple[str, ...]], _InsertPlan] = {}

    def __call__(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        connection = session.connection()
        keys = tuple(rows[0])
        plan = self._plans.get((connection.dialect.name, keys))
        if plan is None:
            plan = self._plans[(connection.dialect.name, keys)] = _InsertPlan(self.table, keys, connection.dialect)
        if not plan.usable:  # defaults the database or SQLAlchemy must fill in: the general path
            connection.execute(insert(self.table), list(rows))
            return
        connection.exec_driver_sql(plan.sql, plan.parameters(rows))
