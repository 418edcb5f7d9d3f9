"""What one dirbridge process holds, in one place (the composition root).

Given by ``build_runtime``: the config, the store, the services and the clock (the
services' clock, one for the whole process). Built once, on first use: the metrics, the
authorizer, the run service (``runs``: every sync and job run, each in a thread it
tracks), the SCIM activity counter (a flush thread while there is traffic), the user
binder, the mail outbox (a worker thread from the first queued mail) and the TOTP
vault. Set by the daemon: the scheduler and its leader lease (renewed
by a scheduler job). The serve-only parts, the HTTP server, the systemd notifier and the
watchdog thread, belong to ``bridge.daemon.Daemon``, which starts and stops everything in
order: ``Daemon.stop`` stops the scheduler, the HTTP server and the run service against
one deadline, gives the lease up, then calls ``Runtime.close``. The sync lock's heartbeat
is a thread of the sync that holds it (bridge.ldap.lock). Built for the daemon, the
commands and the tests alike, and handed to the app factory; nothing of it exists at
import time."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from bridge.clock import Clock, utcnow
from bridge.config import Config
from bridge.services import Services
from bridge.store import Store, migrate

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from bridge.accounts.outbox import Outbox
    from bridge.accounts.vault import TotpVault
    from bridge.jobs.leader import Leadership
    from bridge.jobs.runner import RunService
    from bridge.ldap.auth import Binder
    from bridge.mapping.engine import Authorizer
    from bridge.metrics import Metrics
    from bridge.services.token_cache import TokenCache
    from bridge.web.scim_activity import ScimActivity


def replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Runtime:
    config: Config
    store: Store
    services: Services
    started_at: datetime = field(default_factory=utcnow)
    #: when this process started, on the monotonic clock (its uptime, whatever ``clock`` says)
    started_monotonic: float = field(default_factory=time.monotonic)
    replica: str = field(default_factory=replica_name)
    scheduler: BaseScheduler | None = None
    #: the scheduler's leader lease (bridge.jobs.leader), set when the scheduler is built
    leadership: Leadership | None = None
    metrics: Metrics = field(init=False)

    @property
    def clock(self) -> Clock:
        """The one clock of the process, kept by the services (every time they write) and
        read by the accounts code, the run records, the leases and the status page; a
        test sets its own here."""
        return self.services.clock

    @clock.setter
    def clock(self, value: Clock) -> None:
        self.services.clock = value

    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started_monotonic

    def __post_init__(self) -> None:
        from bridge.metrics import Metrics

        self.metrics = Metrics(self)

    def close(self) -> None:
        """Stop the SCIM counter's flush thread, if one was built (writing what is left),
        and close the store's connections: the last step of ``Daemon.stop``. The run
        service and the scheduler are stopped before, by the daemon, in their order."""
        if "scim_activity" in self.__dict__:  # built on first use: nothing to stop otherwise
            self.scim_activity.stop()
        if "outbox" in self.__dict__:
            self.outbox.close()
        self.store.dispose()

    @cached_property
    def authorizer(self) -> Authorizer:
        """Answers "may this user do that here" from the store, with caches kept exact by
        the change log (bridge.mapping.engine). The config was applied by build_runtime."""
        from bridge.mapping.engine import Authorizer

        return Authorizer(self.store, self.config)

    @cached_property
    def scim_activity(self) -> ScimActivity:
        """SCIM requests and errors per client and minute, for the status page."""
        from bridge.web.scim_activity import ScimActivity

        return ScimActivity(self.store, lambda: self.clock())

    @cached_property
    def runs(self) -> RunService:
        """The background work of this process (bridge.jobs.runner): syncs and job runs
        started by the API and the scheduler, recorded first, stopped by ``Daemon.stop``."""
        from bridge.jobs.runner import RunService

        return RunService(self)

    @cached_property
    def binder(self) -> Binder:
        """The user binds of this process (bridge.ldap.auth): bounded per LDAP source."""
        from bridge.ldap.auth import Binder

        return Binder()

    @cached_property
    def tokens(self) -> TokenCache:
        """The API and SCIM tokens this process has seen (bridge.services.token_cache),
        exact on every replica by the change log."""
        from bridge.services.token_cache import TokenCache

        return TokenCache(self.store, lambda: self.clock)

    @cached_property
    def outbox(self) -> Outbox:
        """Mail sent after the answer (bridge.accounts.outbox): a worker thread from the first
        mail on, stopped by ``close``."""
        from bridge.accounts.mail import Mailer
        from bridge.accounts.outbox import Outbox

        return Outbox(Mailer(self.config.smtp).send)

    @cached_property
    def totp_vault(self) -> TotpVault:
        """The key the TOTP secrets are sealed with (bridge.accounts.vault), made when first
        needed: a command that touches no TOTP secret makes no key file."""
        from bridge.accounts.vault import TotpVault

        return TotpVault.of(self.config)


class NotMigrated(Exception):
    """The database schema is behind the code and may not be upgraded automatically."""


def open_store(config: Config, *, migrate_if_allowed: bool = True) -> Store:
    """Open the configured database; on the embedded default (or with auto_migrate)
    apply pending migrations, otherwise refuse to work on an old schema."""
    store = Store(config.database_url, config.database.pool_size)
    if migrate.is_up_to_date(store.engine):
        return store
    current = migrate.current_revision(store.engine)
    if current is not None and not migrate.is_known(current):
        store.dispose()
        raise NotMigrated(f"the database schema ({current}) is newer than this dirbridge knows "
                          f"({migrate.head_revision()}): run the newer dirbridge, or restore a backup")
    if migrate_if_allowed and config.database.should_auto_migrate(config.data_dir):
        migrate.upgrade(store.engine)
        return store
    store.dispose()
    raise NotMigrated(
        f"the database schema is at {current or 'nothing'}, the code needs {migrate.head_revision()}: "
        "run 'dirbridge db upgrade'"
    )


def build_runtime(config: Config, store: Store | None = None) -> Runtime:
    from bridge.mapping.apply import apply_config

    store = store or open_store(config)
    services = Services(store, config)
    apply_config(services, config)  # the config's scopes, roles and portal groups (idempotent)
    return Runtime(config=config, store=store, services=services)
