"""What one dirbridge process holds: config, store, services, scheduler. Built by the
daemon or the tests and handed to the app factory; nothing of it exists at import time."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from bridge.config import Config
from bridge.services import Services
from bridge.store import Store, migrate
from bridge.store.models import utcnow

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from bridge.accounts.vault import TotpVault
    from bridge.ldap.auth import Binder
    from bridge.metrics import Metrics


def replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Runtime:
    config: Config
    store: Store
    services: Services
    started_at: datetime = field(default_factory=utcnow)
    replica: str = field(default_factory=replica_name)
    scheduler: BaseScheduler | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        from bridge.metrics import Metrics

        self.metrics = Metrics(self)

    @cached_property
    def binder(self) -> Binder:
        """The user binds of this process (bridge.ldap.auth): bounded per LDAP source."""
        from bridge.ldap.auth import Binder

        return Binder()

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
