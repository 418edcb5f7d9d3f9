"""The HTTP server of ``dirbridge serve``: waitress.

waitress reads each request whole (headers and body, the body spooled to a file past
a size) in its I/O loop before a request thread sees it, so a client that sends its
headers a byte at a time, or connects and says nothing, costs a socket, not one of
the ``server.workers`` threads: 200 of them do not stop ``/healthz``
(tests/reliability/test_slow_clients.py; cheroot, before, stopped at 8). A request
thread only ever runs the application.

A request must arrive whole within ``server.request_timeout`` (30 s): a client that
trickles its headers is disconnected then, so slow clients hold a socket for at most
that long, and ``server.max_connections`` of them at once are what it takes to keep
new connections waiting (a reverse proxy in front is the tool beyond that).

The hot paths, SCIM and the check API, are served by threads of their own
(``server.workers`` each; ``_PathDispatcher``): an IdP that sends more SCIM requests at
once than there are threads, or a flood of unauthenticated ones, queues SCIM alone,
while the portal's checks, the health check, the pages and the admin API go on. Each
hot path's application call is also made under a gate (bridge.gate,
``server.hot_path_threads`` of them at once, "auto": 1 on SQLite, 2 on PostgreSQL;
``hot_path_gates``): the application's call, not waitress's writing of the answer. A
request waiting at its path's gate holds a thread of that path only.

``stop()`` is graceful: the listener closes at once, requests already received are
answered (up to ``server.shutdown_timeout``), then every connection closes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ThreadedTaskDispatcher

from bridge.gate import Gate

log = logging.getLogger("bridge.http")
WsgiApp = Callable[..., Any]
SCIM_PATHS = "/scim"  # SCIM's application, where bridge.web mounts it
CHECK_PATHS = "/api/v1/check"
#: the paths served by threads of their own, each under a gate of its own: a mount and what is under it
HOT_PATHS = (SCIM_PATHS, CHECK_PATHS)


def hot_path_of(path: str) -> str | None:
    """The hot path (of HOT_PATHS) a request's path is on, or None: the path as the
    application sees it (waitress folds leading slashes into one for PATH_INFO, so
    ``//scim/v2/Users`` is SCIM's), the mount itself (``/scim``, SCIM's root query) or
    anything under it. The pool and the gate of a request are both chosen by this."""
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    for prefix in HOT_PATHS:
        if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
            return prefix
    return None


class _Gated:
    """The application, each request on a hot path called under its path's gate. The gate
    covers the application's call and its body made whole, not waitress's writing of the
    answer: a client that pipelines requests and reads no answer fills its connection's
    buffer, and waitress then waits for it to drain (the thread it holds is one of
    ``server.workers``; a slot held meanwhile would be every request of the path)."""

    def __init__(self, app: WsgiApp, gates: dict[str, Gate]):
        self.app = app
        self.gates = {prefix: gate for prefix, gate in gates.items() if gate.enabled}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        hot = hot_path_of(environ.get("PATH_INFO") or "")
        gate = self.gates.get(hot) if hot is not None else None
        if gate is None:
            return self.app(environ, start_response)
        with gate.held():
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


def hot_path_gates(slots: int) -> dict[str, Gate]:
    """The gates of the hot paths by path prefix, ``slots`` each: short requests that only
    compute and read or write the store, where the IdPs and the portal wait for the answer.
    A request waiting elsewhere lets go of its slot (bridge.gate.slot_released)."""
    return {prefix: Gate(slots) for prefix in HOT_PATHS}


class _PathDispatcher:
    """waitress's task dispatcher, one pool of threads per hot path and one for the rest.

    waitress hands a connection to its dispatcher when the connection's next request has
    arrived whole (and again after each answer, while requests are pipelined); the
    request's path picks the pool. A path's pool serves that path only, so what queues
    there (a SCIM flood, requests waiting at the path's gate) does not hold up another
    path: with one shared pool, requests waiting at SCIM's gate held the threads the
    checks needed (a check took 4.5 s behind a SCIM flood with one slot, 0.5 s without).
    """

    def __init__(self, prefixes: Iterable[str], threads: int):
        self.pools: dict[str, ThreadedTaskDispatcher] = {}
        for prefix in (*prefixes, ""):
            pool = ThreadedTaskDispatcher()
            pool.set_thread_count(threads)
            self.pools[prefix] = pool
        self._rest = self.pools[""]

    def pool_of(self, path: str) -> ThreadedTaskDispatcher:
        hot = hot_path_of(path)
        return self._rest if hot is None else self.pools[hot]

    def add_task(self, task: Any) -> None:
        """``task`` is a connection (its next request first in ``requests``) or an error
        answer; what has no request path goes to the rest's pool."""
        requests = getattr(task, "requests", None)
        request = requests[0] if requests else getattr(task, "request", None)
        path = getattr(request, "path", None)
        (self.pool_of(path) if isinstance(path, str) else self._rest).add_task(task)

    @property
    def busy(self) -> bool:
        """A request is queued or served in any pool."""
        return any(pool.queue or pool.active_count for pool in self.pools.values())

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        stopped = [pool.shutdown(cancel_pending=cancel_pending, timeout=timeout) for pool in self.pools.values()]
        return all(stopped)


class _Channel(HTTPChannel):  # type: ignore[misc]
    """A connection that knows since when its current request has been arriving."""

    request_started: float | None = None

    def received(self, data: bytes) -> bool:
        before = self.request
        result = bool(super().received(data))
        if self.request is None:
            self.request_started = None  # complete (or nothing yet): the clock stops
        elif self.request is not before or self.request_started is None:
            self.request_started = time.time()
        return result


class HttpServer:
    def __init__(self, app: WsgiApp, *, host: str, port: int, threads: int, max_connections: int,
                 idle_timeout: float, max_body_bytes: int, shutdown_timeout: float, ident: str,
                 request_timeout: float = 30.0, gates: dict[str, Gate] | None = None):
        self.app = app
        self.gates = gates or {}
        self.options: dict[str, Any] = {
            "host": host, "port": port, "threads": threads,
            "connection_limit": max_connections,  # beyond: new connections wait in the backlog
            "channel_timeout": idle_timeout,  # a connection with nothing under way closes after this
            "max_request_body_size": max_body_bytes,  # larger: 413 before the application is called
            "asyncore_use_poll": True,  # poll(), not select(): no limit of 1024 descriptors
            "backlog": 1024, "ident": ident, "expose_tracebacks": False,
            "cleanup_interval": 1,  # how often connections are checked against the timeouts
        }
        self.request_timeout = request_timeout
        self.shutdown_timeout = shutdown_timeout
        self._server: Any = None
        self._dispatcher: _PathDispatcher | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        """Bind (raising OSError at once if the address is taken), then serve in a thread."""
        app = _Gated(self.app, self.gates) if any(g.enabled for g in self.gates.values()) else self.app
        self._dispatcher = _PathDispatcher(HOT_PATHS, self.options["threads"])
        try:
            self._server = create_server(app, _dispatcher=self._dispatcher, **self.options)
        except BaseException:  # the address is taken, say: no pool threads left behind
            self._dispatcher.shutdown(cancel_pending=True, timeout=1)
            self._dispatcher = None
            raise
        self._server.channel_class = _Channel
        tidy = self._server.maintenance

        def maintenance(now: float) -> None:
            """waitress closes idle connections; a request that has not arrived whole within
            request_timeout (headers a byte at a time) is closed too, so slow clients hold
            their sockets for that long at most."""
            tidy(now)
            cutoff = now - self.request_timeout
            for channel in list(self._server.active_channels.values()):
                started = getattr(channel, "request_started", None)
                if started is not None and started < cutoff and not channel.requests:
                    channel.will_close = True

        self._server.maintenance = maintenance
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self._thread.start()

    @property
    def bound_port(self) -> int:
        return int(self._server.effective_port)

    @property
    def serving(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    def stop(self, deadline: float | None = None) -> None:
        """Stop accepting, let the requests received finish (until ``deadline``, a
        ``time.monotonic`` value; ``shutdown_timeout`` from now without one), then close
        every connection."""
        server = self._server
        if server is None or self._stopping.is_set():
            return
        self._stopping.set()
        self._in_loop(lambda: wasyncore.dispatcher.close(server))  # the listener only
        if deadline is None:
            deadline = time.monotonic() + self.shutdown_timeout
        while time.monotonic() < deadline and self._busy():
            time.sleep(0.05)
        if self._busy():
            log.warning("stopping with requests still in flight after %.0f s", self.shutdown_timeout)
        if self._dispatcher is not None:
            self._dispatcher.shutdown(cancel_pending=True, timeout=1)

        def close_all() -> None:
            for channel in list(server._map.values()):
                channel.close()

        self._in_loop(close_all)  # the loop ends once its map is empty
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _busy(self) -> bool:
        """A request waits or runs, or an answer is still being sent."""
        server = self._server
        if self._dispatcher is not None and self._dispatcher.busy:
            return True
        return any(getattr(channel, "requests", None) or getattr(channel, "total_outbufs_len", 0)
                   for channel in list(server.active_channels.values()))

    def _in_loop(self, thunk: Callable[[], None]) -> None:
        """Run ``thunk`` in the I/O loop's thread (wasyncore is not thread-safe) and wait."""
        done = threading.Event()

        def run() -> None:
            try:
                thunk()
            finally:
                done.set()

        if self._thread is None or not self._thread.is_alive():
            run()
            return
        self._server.trigger.pull_trigger(run)
        done.wait(timeout=5)
