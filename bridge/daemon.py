"""``dirbridge serve``: the WSGI server and the scheduler in one process.

SIGTERM and SIGINT stop it gracefully: no new run starts, the listener closes,
requests in flight finish (up to ``server.shutdown_timeout``), syncs and job runs in
flight get until ``server.shutdown_timeout`` after the signal to finish, and any that
cannot are interrupted and recorded so (bridge.jobs.runner); the leader lease is given
up, then the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from types import FrameType

from sqlalchemy.exc import SQLAlchemyError

from bridge import __version__
from bridge.config import Config
from bridge.jobs.leader import release_leadership
from bridge.jobs.scheduler import build_scheduler
from bridge.notify import Notifier, Watchdog
from bridge.runtime import Runtime
from bridge.web import create_app
from bridge.web.server import HttpServer, hot_path_gates

log = logging.getLogger("bridge.daemon")

SIGNAL_TICK_SECONDS = 0.2


class Daemon:
    def __init__(self, rt: Runtime):
        self.rt = rt
        self.stopping = threading.Event()
        config = rt.config.server
        self.app = create_app(rt)
        self.server = HttpServer(
            self.app, host=config.host, port=config.port, threads=config.workers,
            max_connections=config.max_connections, idle_timeout=config.idle_timeout,
            max_body_bytes=rt.config.scim.bulk_max_payload_bytes * 2 + 65536,
            shutdown_timeout=config.shutdown_timeout, ident=f"dirbridge/{__version__}",
            request_timeout=config.request_timeout, gates=hot_path_gates(rt.config.hot_path_slots),
        )
        self.scheduler = build_scheduler(rt) if rt.config.jobs.enabled else None
        rt.scheduler = self.scheduler
        self.notifier = Notifier()  # systemd Type=notify; a no-op elsewhere
        self.watchdog = Watchdog(self.notifier, self.health_problem)

    @property
    def bound_port(self) -> int:
        return self.server.bound_port

    def start(self) -> None:
        """Bind the socket (raising at once if the port is taken), then serve in a thread."""
        self.server.start()
        if self.scheduler is not None:
            self.scheduler.start()
        self.notifier.ready(f"serving on {self.rt.config.server.host}:{self.bound_port}")
        self.watchdog.start()

    def health_problem(self) -> str | None:
        """Why systemd should restart this process (the watchdog then stops pinging), or None."""
        if not self.server.serving:
            return "the HTTP server thread is not serving"
        if self.scheduler is not None and not self.scheduler.running:
            return "the scheduler is not running"
        try:
            self.rt.store.ping()
        except SQLAlchemyError as exc:
            return f"the database does not answer: {type(exc).__name__}"
        return None

    def stop(self) -> None:
        """Stop in order: what starts work first (the scheduler, then the listener), then the
        work in flight (requests, then runs, by one deadline), then the lease and the store."""
        log.info("stopping: finishing requests and runs in flight")
        deadline = time.monotonic() + self.rt.config.server.shutdown_timeout
        self.notifier.stopping()
        self.watchdog.stop()
        self.rt.runs.begin_stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)  # no new turn; a turn in flight is a run below
        self.server.stop(deadline)
        self.rt.runs.stop(deadline)
        release_leadership(self.rt)  # another replica takes the jobs over at once
        self.rt.close()
        log.info("stopped")

    def run_until_signalled(self) -> None:
        def _signalled(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, _signalled)
        signal.signal(signal.SIGINT, _signalled)
        # Python runs a signal's handler in the main thread, but only once that thread wakes;
        # when the kernel hands the process's SIGTERM to a worker thread, an untimed wait
        # would sleep on for good. A short timed wait lets the handler run within a tick.
        while not self.stopping.wait(SIGNAL_TICK_SECONDS):
            pass
        self.stop()


def _command() -> str:
    """How this process was started (``.venv/bin/dirbridge`` from scripts/serve), for the
    commands the banner suggests: a venv's ``dirbridge`` is not on the PATH."""
    import os
    import sys

    started = sys.argv[0] if sys.argv and sys.argv[0].endswith("dirbridge") else "dirbridge"
    relative = os.path.relpath(started) if os.path.isabs(started) else started
    return relative if not relative.startswith("..") and os.sep in relative else started


def banner(config: Config, port: int, url_is_default: bool) -> str:
    host = config.server.host
    base = config.server.public_url or f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    lines = [
        f"dirbridge {__version__} is serving on {base}/",
        f"  status page:   {base.rstrip('/')}/status   (first operator: {_command()} user create NAME --email "
        f"ADDRESS, then {_command()} operator add NAME, which says what else it needs)",
        f"  health:        {base.rstrip('/')}/healthz and /readyz",
        f"  SCIM token:    {_command()} token create NAME   (prints the token once; store it in your IdP)",
    ]
    if url_is_default:
        lines.append(f"  data:          {config.data_dir.resolve()} (embedded SQLite default)")
    lines.append("  stop:          Ctrl-C or SIGTERM")
    return "\n".join(lines)


def serve(rt: Runtime) -> None:
    sealed = rt.totp_vault.reseal(rt.store)  # TOTP secrets stored in clear before: sealed now
    if sealed:
        log.info("sealed %d TOTP secret(s) with the current key", sealed)
    daemon = Daemon(rt)
    daemon.start()
    print(banner(rt.config, daemon.bound_port, rt.config.database.url is None), flush=True)
    log.info("serving", extra={"listen": f"{rt.config.server.host}:{daemon.bound_port}",
                               "version": __version__, "replica": rt.replica})
    daemon.run_until_signalled()
    sys.stdout.flush()
