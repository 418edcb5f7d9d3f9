"""The service layer: the single write path of SCIM, LDAP sync, the admin API, the CLI
and the CSV import, so that every source obeys the same rules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bridge.config import Config
from bridge.services.actor import Actor
from bridge.services.errors import ServiceError
from bridge.services.unit import UnitOfWork
from bridge.store.db import Store

__all__ = ["Actor", "ServiceError", "Services", "UnitOfWork"]


class Services:
    def __init__(self, store: Store, config: Config):
        self.store = store
        self.config = config

    @contextmanager
    def unit(self, actor: Actor) -> Iterator[UnitOfWork]:
        """A write transaction for ``actor``; any error rolls back everything in it."""
        with self.store.write() as session:
            yield UnitOfWork(session, actor, self.config.ownership, self.config)
