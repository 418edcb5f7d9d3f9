"""systemd's readiness and watchdog protocol (sd_notify), for ``Type=notify`` units.

The protocol is one datagram of ``KEY=VALUE`` lines sent to the unix socket named
by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). It is a
few lines, so it lives here instead of in a dependency: the PyPI ``sdnotify``
package has been unmaintained since 2017, and linking libsystemd through ctypes
would tie the daemon to its presence. Without ``$NOTIFY_SOCKET`` (not started by
systemd) every call is a no-op, so the daemon never needs to ask.

The watchdog pings only while the process is healthy (the caller's check), so
that systemd restarts a wedged process instead of a thread keeping it "alive".
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger("bridge.notify")

#: A health check: None when healthy, else a short reason (shown in STATUS=).
HealthCheck = Callable[[], str | None]


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET``; does nothing when it is unset."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_seconds = _watchdog_seconds(env)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; False when not sent (never raises:
        a notification that cannot be delivered must not take the daemon down)."""
        if self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            log.warning("cannot notify systemd: %s", exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def stopping(self, status: str = "stopping: finishing requests and jobs in flight") -> bool:
        return self.send(STOPPING="1", STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")


class Watchdog:
    """Pings systemd's watchdog at half of ``$WATCHDOG_USEC``, but only while ``check``
    passes: a failing or hanging check lets the deadline pass and systemd restart us."""

    def __init__(self, notifier: Notifier, check: HealthCheck):
        self.notifier = notifier
        self.check = check
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        seconds = self.notifier.watchdog_seconds
        if not self.notifier.enabled or seconds is None:
            return
        self._thread = threading.Thread(target=self._run, args=(seconds / 2,), name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, interval: float) -> None:
        unhealthy: str | None = None
        while True:
            try:
                problem = self.check()
            except Exception as exc:  # a broken check is a failed check, not a dead watchdog
                problem = f"health check raised {type(exc).__name__}"
            if self._stop.is_set():
                return
            if problem is None:
                self.notifier.watchdog()
                if unhealthy is not None:
                    log.info("healthy again; watchdog pings resumed")
                    self.notifier.status("serving")
            elif problem != unhealthy:
                log.error("unhealthy, not pinging the watchdog (systemd restarts us if this lasts): %s", problem)
                self.notifier.status(f"unhealthy: {problem}")
            unhealthy = problem
            if self._stop.wait(interval):
                return


def _socket_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode("utf-8")  # abstract namespace
    if value.startswith("/"):
        return value
    log.warning("ignoring NOTIFY_SOCKET=%r: neither a path nor an @abstract name", value)
    return None


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """The watchdog period, or None when there is none for this process."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (we were forked or exec'd by the main one)
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None
