"""A full scan read by a child process, beside the sync's writes instead of before them.

ldap3 decodes BER in pure Python: reading 100,000 entries costs about as much CPU as
writing them, and a thread would only take turns with the writer for the GIL. So a
full sync starts one child process that binds on its own, runs the paged searches,
turns every entry into a plain ``UserEntry``/``GroupEntry`` and hands them over a
page at a time. At most ``PAGES_AHEAD`` pages wait for the writer, so memory stays
flat and a directory that goes away mid-scan still stops the sync a few pages later.
The parent writes each page as before, one transaction per batch.

The child reads with libldap (python-ldap, bridge.ldap.creader: BER decoded in C,
several times faster) when it imports and the source's ``reader`` allows it, else
with ldap3; the parent logs once per source which one it was.

The child is a plain ``python -c`` started with ``subprocess`` (not
``multiprocessing``: its spawn start method runs the parent's ``__main__`` module
again, which a script without a ``__main__`` guard does not survive, and its queues
need ``sem_open``). It reads the source (bind password included) as a pickle on
stdin, never from its command line, and writes length-prefixed pickles on stdout.
Its log records are re-emitted by the parent's loggers, so the journal sees one
process; its error is raised in the parent when the parent reaches it; a child
whose parent went away stops at its next write (broken pipe).
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from ldap3.core.exceptions import LDAPException

from bridge.config import LdapSourceConfig
from bridge.ldap.gcpause import fewer_collections

log = logging.getLogger(__name__)

#: pages (of users, or of groups) the child may read ahead of the writer
PAGES_AHEAD = 4
#: groups per message: a group carries its member DNs, so a few hundred make a page
GROUPS_PER_MESSAGE = 200
#: how often the child's reader checks that its writer thread still has a parent to write to
POLL_SECONDS = 0.5
_LENGTH_BYTES = 8

_SERVER, _USERS, _USERS_END, _GROUPS, _END, _ERROR, _LOG = (
    "server", "users", "users-end", "groups", "end", "error", "log")

# The child's first line of work: where to import from (the parent's sys.path, read
# before anything of bridge is imported), then the real entry point.
_BOOTSTRAP = ("import pickle, sys; sys.path[:0] = pickle.load(sys.stdin.buffer); "
              "from bridge.ldap.readahead import child_main; child_main()")


class ReaderFailed(LDAPException):  # type: ignore[misc]  # ldap3 ships no types
    """The reading process failed in a way that could not be handed over as it was."""


class ReadAhead:
    """The users and then the groups of one full scan of ``source``, read by a child
    process. Use it as a context manager: leaving it stops the child."""

    def __init__(self, source: LdapSourceConfig, *, pages_ahead: int = PAGES_AHEAD):
        if not sys.executable:
            raise OSError("no Python interpreter to start the reading process with")
        self._source = source.name
        self._process = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        assert self._process.stdin is not None and self._process.stdout is not None
        self._messages: IO[bytes] = self._process.stdout
        try:
            with self._process.stdin as request:
                pickle.dump(list(sys.path), request)
                pickle.dump((source, logging.getLogger("bridge").getEffectiveLevel(), pages_ahead), request)
        except OSError:
            self.close()
            raise
        self._server: str | None = None
        #: the reader the child uses ("libldap" or "ldap3"), known once it is bound
        self.reader: str | None = None
        self._users_done = False
        self._finished = False
        #: the child's peak RSS in KiB and its CPU time, known once the scan completed
        self.peak_rss_kb: int | None = None
        self.cpu_seconds: float | None = None

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def server(self) -> str:
        """The host the child is bound to (a USN mark belongs to one DC); waits for the bind."""
        if self._server is None:
            kind, payload = self._next()
            if kind != _SERVER:
                raise ReaderFailed(f"the LDAP reading process sent {kind!r} before binding")
            self._server, self.reader, version = payload
            _log_reader_once(self._source, self.reader, version)
        return self._server

    def users(self, since: str | None = None) -> Iterator[Any]:
        """Every user entry of the scan, in directory order."""
        if since is not None:
            raise ValueError("the reading process does full scans only")
        self.server  # noqa: B018  # the bind comes first
        while not self._users_done:
            kind, payload = self._next()
            if kind == _USERS_END:
                self._users_done = True
            elif kind == _USERS:
                yield from payload
            else:
                raise ReaderFailed(f"the LDAP reading process sent {kind!r} among the users")

    def groups(self, since: str | None = None) -> Iterator[Any]:
        """Every group entry of the scan (after the users)."""
        if since is not None:
            raise ValueError("the reading process does full scans only")
        for _ in self.users():
            raise ReaderFailed("users left unread before the groups")
        while not self._finished:
            kind, payload = self._next()
            if kind == _END:
                self._finished = True
                self.peak_rss_kb, self.cpu_seconds = payload
            elif kind == _GROUPS:
                yield from payload
            else:
                raise ReaderFailed(f"the LDAP reading process sent {kind!r} among the groups")

    def close(self) -> None:
        """Stop the child (at once unless the scan was read to its end) and reap it."""
        if self._process.poll() is None:
            if not getattr(self, "_finished", False):
                self._process.kill()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._messages.close()

    def _read(self, size: int) -> bytes:
        data = self._messages.read(size)
        if len(data) < size:
            code = self._process.wait()
            raise ReaderFailed(f"the LDAP reading process ended (exit code {code}) before the end of the scan")
        return data

    def _next(self) -> tuple[str, Any]:
        """The next message that is not a log record; an error of the child is raised here."""
        while True:
            size = int.from_bytes(self._read(_LENGTH_BYTES), "big")
            kind, payload = pickle.loads(self._read(size))
            if kind == _LOG:
                logging.getLogger(payload.name).handle(payload)
            elif kind == _ERROR:
                raise pickle.loads(payload)
            else:
                return kind, payload


#: (source, reader) pairs this process has logged
_LOGGED: set[tuple[str, str]] = set()


def _log_reader_once(source: str, reader: str | None, version: str) -> None:
    """Say which reader reads the full scans of ``source``, once per process and reader."""
    if reader is None or (source, reader) in _LOGGED:
        return
    _LOGGED.add((source, reader))
    if reader == "libldap":
        log.info("LDAP source %s: full scans read with libldap (%s)", source, version, extra={"source": source})
    else:
        log.info("LDAP source %s: full scans read with ldap3 (%s)", source, version, extra={"source": source})


# -- the child -----------------------------------------------------------------------------


class _Sender:
    """The child's end: a bounded queue of pickled messages and a thread writing them
    to stdout. The reading thread pickles (a writer thread pickling would fight it for
    the GIL); the writer only sits in ``write``, which releases it."""

    def __init__(self, out: IO[bytes], pages_ahead: int):
        self.out = out
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=pages_ahead)
        self.broken = threading.Event()
        self.thread = threading.Thread(target=self._write, name="readahead-writer", daemon=True)
        self.thread.start()

    def put(self, kind: str, payload: Any = None) -> None:
        message = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
        while True:
            if self.broken.is_set():
                os._exit(1)  # the parent is gone: nobody reads any more
            try:
                self.queue.put(message, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until every message is written."""
        self.queue.put(None)
        self.thread.join()

    def _write(self) -> None:
        while (message := self.queue.get()) is not None:
            try:
                self.out.write(len(message).to_bytes(_LENGTH_BYTES, "big"))
                self.out.write(message)
                self.out.flush()
            except OSError:
                self.broken.set()
                return


class _ForwardLogs(logging.Handler):
    """Sends the child's log records to the parent, formatted (args and tracebacks
    need not pickle)."""

    def __init__(self, sender: _Sender):
        super().__init__()
        self.sender = sender

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            self.sender.put(_LOG, record)
        except Exception:  # a log record is never worth the scan
            self.handleError(record)


def _error_payload(exc: BaseException) -> bytes:
    """The exception itself when it survives pickling (ldap3's do), else its text."""
    try:
        payload = pickle.dumps(exc)
        pickle.loads(payload)
        return payload
    except Exception:
        return pickle.dumps(ReaderFailed(f"{type(exc).__name__}: {exc}"))


def _peak_rss_kb() -> int:
    """This process's own peak RSS. Linux's ``ru_maxrss`` also counts the parent's memory
    as it was when it forked this process (the high-water mark survives the exec);
    ``VmHWM`` is the exec'd program's alone."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_main() -> None:
    """The child: read the request on stdin, bind, send the users page by page, then
    the groups, then the end (or the error)."""
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but messages may reach the parent's pipe
    source, log_level, pages_ahead = pickle.load(sys.stdin.buffer)
    sender = _Sender(out, pages_ahead)
    root = logging.getLogger()
    root.handlers = [_ForwardLogs(sender)]
    root.setLevel(log_level)
    try:
        with fewer_collections():  # ldap3 allocates by the million too
            _read_scan(source, sender)
        sender.put(_END, (_peak_rss_kb(), time.process_time()))
    except BaseException as exc:  # noqa: BLE001  # every failure goes to the parent
        sender.put(_ERROR, _error_payload(exc))
    sender.finish()


def _read_scan(source: LdapSourceConfig, sender: _Sender) -> None:
    from bridge.ldap import creader
    from bridge.ldap.presets import attribute_map

    amap = attribute_map(source)
    if creader.chosen(source) == creader.LIBLDAP:
        reader = creader.CReader(source, amap)
        try:
            sender.put(_SERVER, (reader.host, creader.LIBLDAP, creader.version()))
            _send_scan(reader, source, sender)
        finally:
            reader.close()
        return
    _read_scan_ldap3(source, amap, sender)


def _read_scan_ldap3(source: LdapSourceConfig, amap: Any, sender: _Sender) -> None:
    import ldap3

    from bridge.ldap.connection import connect
    from bridge.ldap.directory import Reader

    # Plain dicts for the entries' attributes: ldap3's case-insensitive dict costs a
    # method call per key set and looked up, and the parser matches names in lower
    # case itself (bridge.ldap.directory.EntryParser). This process is the only user.
    ldap3.set_config_parameter("CASE_INSENSITIVE_ATTRIBUTE_NAMES", False)
    reason = "reader = 'ldap3'" if source.reader == "ldap3" else "python-ldap is not installed"
    conn = connect(source)
    try:
        sender.put(_SERVER, (str(conn.server.host) if conn.server else "", "ldap3",
                             f"ldap3 {ldap3.__version__}; {reason}"))
        _send_scan(Reader(conn, source, amap), source, sender)
    finally:
        try:
            conn.unbind()
        except LDAPException:
            pass  # the directory went away: the error that said so is the one to report


def _send_scan(reader: Any, source: LdapSourceConfig, sender: _Sender) -> None:
    """The users a page at a time, their end, then the groups."""
    page: list[Any] = []
    for user in reader.users():
        page.append(user)
        if len(page) >= source.page_size:
            sender.put(_USERS, page)
            page = []
    if page:
        sender.put(_USERS, page)
    sender.put(_USERS_END)
    groups: list[Any] = []
    for group in reader.groups():
        groups.append(group)
        if len(groups) >= GROUPS_PER_MESSAGE:
            sender.put(_GROUPS, groups)
            groups = []
    if groups:
        sender.put(_GROUPS, groups)
