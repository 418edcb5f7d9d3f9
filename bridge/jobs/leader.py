"""One leader among the replicas: the ``scheduler`` lease (bridge.store.leases).

Every replica tries to take or renew the lease every ``lease_seconds / 3``. The holder
runs the scheduled jobs; the others keep trying, and take over within ``lease_seconds``
after the leader stops renewing (crash, kill, network). A leader that cannot renew
stops counting itself leader a safety margin before the lease runs out, so two
replicas never both think they lead. A graceful stop gives the lease up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from bridge.clock import Clock, utcnow
from bridge.store.db import Store
from bridge.store.leases import LeaseContended, Leases, LeaseState

if TYPE_CHECKING:
    from bridge.runtime import Runtime

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"

__all__ = ["LEASE_NAME", "LeaseState", "Leadership", "current_leader", "release_leadership"]


def current_leader(store: Store, name: str = LEASE_NAME) -> LeaseState | None:
    """The lease as stored (its holder may have died: compare ``expires_at`` with now)."""
    return Leases(store).current(name)


class Leadership:
    """This replica's side of the lease."""

    def __init__(self, store: Store, holder: str, lease_seconds: int, *, name: str = LEASE_NAME,
                 clock: Clock = utcnow, on_take_over: Callable[[str], object] | None = None):
        self.leases = Leases(store, clock)
        self.holder = holder
        self.lease = timedelta(seconds=lease_seconds)
        self.margin = timedelta(seconds=max(1.0, lease_seconds / 6))
        self.name = name
        self.clock = clock
        self._valid_until: datetime | None = None
        self._lock = threading.Lock()
        self._released = False
        #: called with the previous holder when this replica takes over from one that
        #: stopped renewing (it died): its job runs left "running" are closed
        self.on_take_over = on_take_over

    @property
    def renew_every(self) -> float:
        return max(1.0, self.lease.total_seconds() / 3)

    def try_acquire(self) -> bool:
        """Acquire the lease or renew it; True while this replica holds it. Once given up
        (``release``), never again: a turn under way at the graceful stop cannot take it back."""
        if self._released:
            return False
        try:
            before = None if self.is_leader() else self.leases.current(self.name)
            state = self.leases.take(self.name, self.holder, self.lease.total_seconds())
            held = state.holder == self.holder
            if held and before is not None and before.holder != self.holder and self.on_take_over is not None:
                self.on_take_over(before.holder)
        except (SQLAlchemyError, LeaseContended) as exc:
            log.warning("leader lease not renewed: %s", type(exc).__name__, extra={"replica": self.holder})
            state, held = None, False
        with self._lock:
            if self._released and held:  # released while this turn ran: give it up again
                held = False
                self._give_up()
            was = self.is_leader()
            self._valid_until = state.expires_at - self.margin if held and state is not None else None
        if held and not was:
            log.info("this replica leads the scheduled jobs", extra={"replica": self.holder})
        elif was and not held:
            log.warning("this replica lost the leader lease", extra={"replica": self.holder})
        return held

    def is_leader(self) -> bool:
        return self._valid_until is not None and self.clock() < self._valid_until

    def release(self) -> None:
        """Give the lease up (graceful stop): another replica takes it at its next try,
        within ``lease_seconds / 3``, not after the lease would have run out."""
        with self._lock:
            self._released = True
            self._valid_until = None
            self._give_up()

    def _give_up(self) -> None:
        try:
            self.leases.release(self.name, self.holder)
        except SQLAlchemyError as exc:
            log.warning("leader lease not released: %s", type(exc).__name__)


def release_leadership(rt: Runtime) -> None:
    """Give up the lease of this runtime's scheduler, if it has one (graceful stop)."""
    if rt.leadership is not None:
        rt.leadership.release()
