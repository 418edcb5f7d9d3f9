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

With ``server.hot_path_threads`` set (opt-in), requests on the hot paths are served
under a hot-path gate (bridge.gate, that many of them at once; ``hot_path_gates``): the
application's call, not waitress's writing of the answer. SCIM and the check API have a
gate each, so a SCIM Bulk of a thousand operations does not hold up the portal's
checks. The rest (health, pages, logins that may wait seconds on a directory, the admin
API) runs beside them on the other threads, as before.

``stop()`` is graceful: the listener closes at once, requests already received are
answered (up to ``server.shutdown_timeout``), then every connection closes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server

from bridge.gate import Gate

log = logging.getLogger("bridge.http")
WsgiApp = Callable[..., Any]
SCIM_PATHS = "/scim/"
CHECK_PATHS = "/api/v1/check"


class _Gated:
    """The application, each request on a hot path called under its path's gate. The gate
    covers the application's call and its body made whole, not waitress's writing of the
    answer: a client that pipelines requests and reads no answer fills its connection's
    buffer, and waitress then waits for it to drain (the thread it holds is one of
    ``server.workers``; a slot held meanwhile would be every request of the path)."""

    def __init__(self, app: WsgiApp, gates: dict[str, Gate]):
        self.app = app
        self.gates = [(prefix, gate) for prefix, gate in gates.items() if gate.enabled]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO") or ""
        for prefix, gate in self.gates:
            if path.startswith(prefix):
                with gate.held():
                    result = self.app(environ, start_response)
                    try:
                        return [b"".join(result)]
                    finally:
                        close = getattr(result, "close", None)
                        if close is not None:
                            close()
        return self.app(environ, start_response)


def hot_path_gates(slots: int) -> dict[str, Gate]:
    """The gates of the hot paths by path prefix, ``slots`` each: short requests that only
    compute and read or write the store, where the IdPs and the portal wait for the answer.
    A request waiting elsewhere lets go of its slot (bridge.gate.slot_released)."""
    return {SCIM_PATHS: Gate(slots), CHECK_PATHS: Gate(slots)}


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
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        """Bind (raising OSError at once if the address is taken), then serve in a thread."""
        app = _Gated(self.app, self.gates) if any(g.enabled for g in self.gates.values()) else self.app
        self._server = create_server(app, **self.options)
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
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)

        def close_all() -> None:
            for channel in list(server._map.values()):
                channel.close()

        self._in_loop(close_all)  # the loop ends once its map is empty
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _busy(self) -> bool:
        """A request waits or runs, or an answer is still being sent."""
        server = self._server
        dispatcher = server.task_dispatcher
        if dispatcher.queue or dispatcher.active_count:
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
