"""A SELECT compiled once and run on the DBAPI cursor of a transaction's connection.

``Connection.execute`` costs about 70 µs per statement on a 2-CPU machine (the compiled
cache's lookup, an IN list's expansion, events, a result's metadata) around an indexed
SQLite read that takes 10; the SCIM hot path's lookup is one such read per request. A
``Prepared`` does SQLAlchemy's per-execution work once: the statement is compiled for the
engine's dialect with its fixed values (a client's visible sources) expanded into it, and
the bind and result processors SQLAlchemy would apply are taken from the same compilation,
so its rows hold what ``Connection.execute`` returns for the statement
(tests/integration/test_prepared.py compares them on SQLite and PostgreSQL).

Only reads: the write path's statements stay SQLAlchemy's, where the events that watch
them (the audit, tests/fixtures/write_path.py) see them; a statement-watching listener
(``before_cursor_execute``) does not see these. The statements run here are those of the
transaction the caller holds: what it read and wrote before is visible. A driver's error
is raised as SQLAlchemy's, a dropped connection invalidated, as ``Connection.execute`` does.

When to use one: a read that every request of a hot path makes, whose statement is the
same at every run but for scalar values (an IN list of fixed values is expanded when
prepared; one given at each run, or a parameter name the driver needs escaped, is
refused with ValueError when prepared).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from typing import Any

from sqlalchemy import Connection, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


class Prepared:
    """``statement`` for ``dialect``; ``parameters`` are the names of the bound parameters
    given at each run, every other one keeps the value it was built with."""

    def __init__(self, statement: Select[Any], dialect: Dialect, parameters: Iterable[str]):
        compiled = statement.compile(dialect=dialect)
        given = frozenset(parameters)
        unknown = given - set(compiled.binds)
        if unknown:
            raise ValueError(f"the statement has no parameter {sorted(unknown)}")
        if compiled.escaped_bind_names:
            raise ValueError("a parameter name the driver needs escaped: name it plainly")
        # The statement with the fixed IN lists expanded; the given parameters as placeholders.
        state = compiled.construct_expanded_state({name: None for name in given})
        if set(state.parameter_expansion) & given:
            raise ValueError("a list given at each run would change the statement: fix it when prepared")
        self.sql = state.statement
        processors = dict(state.processors)
        self._fixed = {name: processors[name](value) if name in processors else value
                       for name, value in state.parameters.items() if name not in given}
        self._bind = [(name, processors[name]) for name in given if name in processors]
        self._order = list(state.positiontup) if state.positiontup is not None else None
        names = list(statement.selected_columns.keys())
        # rows read by attribute, as SQLAlchemy's Row is
        self._make: Callable[[Iterable[Any]], Any] = namedtuple("PreparedRow", names)._make  # type: ignore[attr-defined]
        self._results: list[tuple[int, Callable[[Any], Any]]] = []
        for index, column in enumerate(statement.selected_columns):
            processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if processor is not None:
                self._results.append((index, processor))

    def rows(self, connection: Connection, parameters: Mapping[str, Any]) -> list[Any]:
        """The statement's rows in ``connection``'s transaction, each a named tuple."""
        values = {**self._fixed, **parameters}
        for name, process in self._bind:
            values[name] = process(values[name])
        arguments: Any = values if self._order is None else [values[name] for name in self._order]
        dialect, driver = connection.dialect, connection.connection.dbapi_connection
        cursor = driver.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, arguments)
            fetched = cursor.fetchall()
        except dialect.loaded_dbapi.Error as exc:
            # Raised as Connection.execute raises it (bridge.store.busy reads SQLAlchemy's errors),
            # and a connection the database dropped is not given back to the pool.
            gone = dialect.is_disconnect(exc, driver, cursor)
            if gone:
                connection.invalidate(exc)
            raise DBAPIError.instance(self.sql, arguments, exc, dialect.loaded_dbapi.Error,
                                      connection_invalidated=gone) from exc
        finally:
            with suppress(Exception):  # a cursor of a dropped connection may not close
                cursor.close()
        if not self._results:
            return [self._make(raw) for raw in fetched]
        rows = []
        for raw in fetched:
            row = list(raw)
            for index, convert in self._results:
                row[index] = convert(row[index])
            rows.append(self._make(row))
        return rows


#: where the sessions of a Store find its Prepared statements (``Session.info``)
SESSION_CACHE = "bridge.store.prepared"
#: statements a Store keeps prepared for its sessions (a handful are used)
MAX_SESSION_STATEMENTS = 64


def session_rows(session: Session, statement: Select[Any], parameters: Mapping[str, Any]) -> list[Any]:
    """The rows of ``statement`` (a read) in ``session``'s transaction, run as a Prepared: compiled
    once per Store (its sessions carry the cache in ``info``), the session's pending changes
    flushed first, as a query of the session would. The reads every write makes (a create's
    name lookup, its conflicts, the held-up admins) cost about 70 µs each through the session.
    A session no Store made runs it through ``session.execute``."""
    cache: dict[Any, Prepared] | None = session.info.get(SESSION_CACHE)
    if cache is None:
        return list(session.execute(statement, parameters).all())
    found = cache.get(statement)  # by the statement object: a module's constant, built once
    if found is None:
        found = Prepared(statement, session.get_bind().dialect, parameters.keys())
        if len(cache) < MAX_SESSION_STATEMENTS:  # a statement built per call is not kept, time after time
            cache[statement] = found
    session.flush()
    return found.rows(session.connection(), parameters)
