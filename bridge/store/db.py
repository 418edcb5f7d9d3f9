"""Engine and sessions: one ``Store`` per process, built from the config.

Reads and writes use different transactions. On SQLite a write transaction
starts with ``BEGIN IMMEDIATE``, taking the write lock before the first read,
so that an invariant checked inside it ("is this the last admin?") cannot be
invalidated by a concurrent writer. On PostgreSQL the service layer locks the
rows it checks with ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import sqlite3
import threading
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from bridge import jsonio
from bridge.files import private_dir, private_file
from bridge.gate import holding_slot, slot_released
from bridge.store.prepared import SESSION_CACHE, Prepared

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _scim_key(value: object) -> object:
    return unicodedata.normalize("NFC", value).lower() if isinstance(value, str) else value


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        # SCIM compares strings as NFC-lowercase; SQLite's lower() only knows ASCII.
        dbapi_connection.create_function("scim_key", 1, _scim_key, deterministic=True)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        # LIKE must respect case: case-insensitive matches lower-case both sides themselves.
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Sent on the driver's connection: through exec_driver_sql, SQLAlchemy's work around
        # the BEGIN took about 15 µs of every transaction. Its errors are raised as
        # SQLAlchemy's, as exec_driver_sql raised them (bridge.store.busy reads them).
        raw: sqlite3.Connection = conn.connection.dbapi_connection
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        try:
            if mode == "IMMEDIATE" and holding_slot():
                # Another process (the CLI) may hold SQLite's write lock: a hot-path request
                # waits out the busy timeout without its slot (bridge.gate).
                if _begin_without_waiting(raw):
                    return
                with slot_released():
                    raw.execute("BEGIN IMMEDIATE")
                return
            raw.execute(f"BEGIN {mode}")
        except sqlite3.Error as exc:
            raise DBAPIError.instance(f"BEGIN {mode}", (), exc, sqlite3.Error) from exc


def _begin_without_waiting(raw: sqlite3.Connection) -> bool:
    """BEGIN IMMEDIATE at once if SQLite's write lock is free; False if another connection
    holds it (nothing begun)."""
    raw.execute("PRAGMA busy_timeout=0")
    try:
        raw.execute("BEGIN IMMEDIATE")
        return True
    except sqlite3.OperationalError as exc:
        if raw.in_transaction or "locked" not in str(exc) and "busy" not in str(exc):
            raise
        return False
    finally:
        raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def _keep_private(engine: Engine, database: Path) -> None:
    """SQLite makes the database, WAL and shared-memory files with the process's umask:
    tighten them to 0600 as a connection opens them (the WAL appears with the first write)."""
    files = [database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")]

    @event.listens_for(engine, "connect")
    def _private(dbapi_connection: Any, _record: Any) -> None:
        for path in files:
            private_file(path)

    wal_private = False

    @event.listens_for(engine, "commit")
    def _private_after_write(_conn: Any) -> None:
        nonlocal wal_private
        if wal_private:
            return
        for path in files[1:]:
            private_file(path)
        wal_private = files[1].exists()


def create_store_engine(url: str, pool_size: int = 10) -> Engine:
    """An engine for ``url``; creates the directory of a SQLite file when missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            private_dir(Path(database).parent)
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                  "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               json_serializer=jsonio.dumps_text, json_deserializer=jsonio.loads)
        _setup_sqlite(engine)
        if database and database != ":memory:":
            _keep_private(engine, Path(database))
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                         json_serializer=jsonio.dumps_text, json_deserializer=jsonio.loads)


class Store:
    """The database of one dirbridge process."""

    def __init__(self, url: str, pool_size: int = 10):
        self.url = url
        self.engine = create_store_engine(url, pool_size)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        write_bind = self.engine.execution_options(sqlite_begin="IMMEDIATE") if self.is_sqlite else self.engine
        # the Prepared statements of this store's sessions (bridge.store.prepared.session_rows)
        self._prepared: dict[Any, Prepared] = {}
        self._read = sessionmaker(self.engine, expire_on_commit=False, info={SESSION_CACHE: self._prepared})
        self._write = sessionmaker(write_bind, expire_on_commit=False, info={SESSION_CACHE: self._prepared})
        # SQLite has one writer at a time, and a connection that finds the write lock taken
        # polls for it, sleeping up to 100 ms between tries: under concurrent writes most of
        # the time goes to sleeping. The writers of this process queue on a lock of their
        # own instead and start the moment the previous one ends; other processes (the CLI)
        # still meet SQLite's busy timeout. Re-entrant: a nested write in the same thread
        # fails as it always did (busy), it does not hang here.
        self._writer = threading.RLock() if self.is_sqlite else None

    def check_flushes(self, listener: Callable[[Session, Any, Any], None]) -> None:
        """Run ``listener`` before every flush of a write session (SQLAlchemy's before_flush):
        how the services refuse, whatever wrote it, a value no store keeps. Once per listener."""
        if not event.contains(self._write, "before_flush", listener):
            event.listen(self._write, "before_flush", listener)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; closing it ends the transaction without committing,
        and the objects read keep their loaded attributes."""
        with self._read() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction's connection, without a session (no ORM object, no identity
        map): what the SCIM hot path reads through (bridge.store.prepared). Rolled back
        when the block ends."""
        with self.engine.connect() as connection:
            connection.begin()
            yield connection

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back on any error."""
        if self._writer is None:
            with self._write() as session, session.begin():
                yield session
            return
        # Past the busy timeout SQLite itself answers (busy), as it would without this lock.
        queued = self._writer.acquire(blocking=False)
        if not queued:
            with slot_released():  # a hot-path request lets go of its slot meanwhile (bridge.gate)
                queued = self._writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            with self._write() as session, session.begin():
                yield session
        finally:
            if queued:
                self._writer.release()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def like_literal(text: str) -> str:
    """``text`` inside a LIKE pattern (used with ``escape="\\"``): its ``%`` and ``_``
    match only themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def rowcount(result: Any) -> int:
    """The rows an UPDATE or DELETE touched (``CursorResult.rowcount``; typed ``Result`` hides it)."""
    return int(getattr(result, "rowcount", 0) or 0)
