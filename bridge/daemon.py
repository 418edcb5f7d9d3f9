"""``dirbridge serve``: the WSGI server and the scheduler in one process.

SIGTERM and SIGINT stop it gracefully: the listener closes, requests in flight
finish (up to ``server.shutdown_timeout``), running jobs finish, then the
process exits 0.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from cheroot import wsgi

from bridge import __version__
from bridge.config import Config
from bridge.jobs.leader import release_leadership
from bridge.jobs.scheduler import build_scheduler
from bridge.runtime import Runtime
from bridge.web import create_app

log = logging.getLogger("bridge.daemon")


class Daemon:
    def __init__(self, rt: Runtime):
        self.rt = rt
        self.stopping = threading.Event()
        config = rt.config.server
        self.server = wsgi.Server(
            (config.host, config.port),
            create_app(rt),
            numthreads=config.workers,
            server_name=f"dirbridge/{__version__}",
            shutdown_timeout=config.shutdown_timeout,
        )
        self.scheduler = build_scheduler(rt) if rt.config.jobs.enabled else None
        rt.scheduler = self.scheduler

    @property
    def bound_port(self) -> int:
        return int(self.server.bind_addr[1])

    def start(self) -> None:
        """Bind the socket (raising at once if the port is taken), then serve in a thread."""
        self.server.prepare()
        threading.Thread(target=self.server.serve, name="http", daemon=True).start()
        if self.scheduler is not None:
            self.scheduler.start()

    def stop(self) -> None:
        log.info("stopping: finishing requests and jobs in flight")
        self.server.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            release_leadership(self.rt)  # another replica takes the jobs over at once
        self.rt.store.dispose()
        log.info("stopped")

    def run_until_signalled(self) -> None:
        def _signalled(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, _signalled)
        signal.signal(signal.SIGINT, _signalled)
        self.stopping.wait()
        self.stop()


def banner(config: Config, port: int, url_is_default: bool) -> str:
    host = config.server.host
    base = config.server.public_url or f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    lines = [
        f"dirbridge {__version__} is serving on {base}/",
        f"  status page:   {base.rstrip('/')}/status",
        f"  health:        {base.rstrip('/')}/healthz and /readyz",
        "  SCIM token:    dirbridge token create NAME   (prints the token once; store it in your IdP)",
    ]
    if url_is_default:
        lines.append(f"  data:          {config.data_dir.resolve()} (embedded SQLite default)")
    lines.append("  stop:          Ctrl-C or SIGTERM")
    return "\n".join(lines)


def serve(rt: Runtime) -> None:
    daemon = Daemon(rt)
    daemon.start()
    print(banner(rt.config, daemon.bound_port, rt.config.database.url is None), flush=True)
    log.info("serving", extra={"listen": f"{rt.config.server.host}:{daemon.bound_port}",
                               "version": __version__, "replica": rt.replica})
    daemon.run_until_signalled()
    sys.stdout.flush()
