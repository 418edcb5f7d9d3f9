"""Never two syncs of one source at once, across threads, processes and replicas.

The lock is a lease (bridge.store.leases, name ``ldap-sync:SOURCE``), the same
primitive the scheduler's leader holds.

The lease is short (LEASE_SECONDS) and a heartbeat thread of the holder renews it
every RENEW_EVERY_SECONDS for as long as the ``source_lock`` block runs, however long
a batch takes, so:

- a holder that is alive keeps it (a renewal that fails, the database being away, is
  retried every RETRY_SECONDS; LEASE_SECONDS leaves room for a few of them);
- a holder that died (SIGKILL, power loss) blocks the next sync for LEASE_SECONDS at
  most, not for the length of a sync;
- a holder that could not delete its lease on the way out (the database was down)
  leaves a lease this process knows to be over: its own next sync takes it over at
  once, and a background thread deletes it as soon as the database is back;
- a holder that finds its lease taken (it could not renew for longer than the lease,
  and another took it over) is told: ``Lease.renew`` raises LeaseLost, so the sync
  stops between batches instead of running next to the other one.

The times are each process's clock (as the scheduler lease's): replicas' clocks must
agree to well within LEASE_SECONDS - RENEW_EVERY_SECONDS.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from bridge.clock import Clock, utcnow
from bridge.services import runs
from bridge.store.db import Store
from bridge.store.leases import LeaseContended, Leases

log = logging.getLogger(__name__)

LEASE_SECONDS = 45.0
RENEW_EVERY_SECONDS = 10.0
RETRY_SECONDS = 2.0

# Holders of this process whose ``source_lock`` block ended but whose lease could not be
# given up (the database was away), by lease name: over, whatever the row's expiry says.
_ended: dict[str, str] = {}
_ended_lock = threading.Lock()


class SyncBusy(Exception):
    """Another sync of this source holds the lock."""


class LeaseLost(RuntimeError):
    """The lease ran out while its holder was cut off from the database, and another
    sync took it over: this one must stop."""


@dataclass
class Lease:
    leases: Leases
    name: str
    holder: str
    lost: bool = False
    released: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _renew_now(self) -> bool:
        """One renewal; True when the lease is still ours (and now LEASE_SECONDS long).
        Raises what the database raises when it cannot be reached. (The UPDATE names the
        holder: it never brings back a lease that was released or taken over.)"""
        with self._lock:
            if self.lost or self.released:
                return False
            if self.leases.renew(self.name, self.holder, LEASE_SECONDS):
                return True
            if not self.released:
                self.lost = True
                log.error("the sync lease was taken over while its holder could not renew it",
                          extra={"lease": self.name, "holder": self.holder})
            return False

    def renew(self, force: bool = False) -> None:
        """Between batches: raise LeaseLost when another sync took the lease over. The
        heartbeat thread keeps the lease; ``force`` renews it now as well."""
        if force and not self.lost:
            self._renew_now()
        if self.lost:
            raise LeaseLost(f"the lease {self.name} was taken over by another sync")

    def _heartbeat(self, stop: threading.Event) -> None:
        wait = RENEW_EVERY_SECONDS
        while not stop.wait(wait):
            try:
                if not self._renew_now():
                    return
                wait = RENEW_EVERY_SECONDS
            except Exception:  # noqa: BLE001 - the database is away: try again soon, the lease still runs
                log.warning("could not renew the sync lease: retrying", exc_info=True,
                            extra={"lease": self.name, "holder": self.holder})
                wait = RETRY_SECONDS


def lease_name(source_name: str) -> str:
    return f"ldap-sync:{source_name}"


def _delete(store: Store, name: str, holder: str) -> None:
    Leases(store).release(name, holder)


def _delete_later(store: Store, name: str, holder: str) -> None:
    """Give an ended holder's lease up once the database answers again (until it would
    have run out anyway); meanwhile this process's next sync may take it over."""
    deadline = time.monotonic() + LEASE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(RETRY_SECONDS)
        with _ended_lock:
            if holder not in _ended:  # taken over by this process's next sync
                return
        try:
            _delete(store, name, holder)
            break
        except Exception:  # noqa: BLE001 - still away
            continue
    with _ended_lock:
        _ended.pop(holder, None)


@contextmanager
def source_lock(store: Store, source_name: str, replica: str, clock: Clock = utcnow) -> Iterator[Lease]:
    """Hold the sync lock of ``source_name``; raises SyncBusy when another holds it.

    Taking the lock also closes runs left ``running`` by a process that died: while
    we hold the lock, nobody else is running a sync of this source."""
    name = lease_name(source_name)
    holder = f"{replica}:{secrets.token_hex(4)}"[:128]
    leases = Leases(store, clock)
    with _ended_lock:
        over = [ended for ended, lease in _ended.items() if lease == name]
    try:
        state = leases.take(name, holder, LEASE_SECONDS, over=over)
    except LeaseContended:
        raise SyncBusy(f"a sync of {source_name!r} is starting elsewhere") from None
    if state.holder != holder:
        raise SyncBusy(f"a sync of {source_name!r} is running ({state.holder}, since "
                       f"{state.acquired_at:%Y-%m-%d %H:%M:%S} UTC)")
    with _ended_lock:
        for ended in over:
            _ended.pop(ended, None)
    lease = Lease(leases, name, holder)
    stop = threading.Event()
    heartbeat = threading.Thread(target=lease._heartbeat, args=(stop,), name=f"lease {name}", daemon=True)
    heartbeat.start()
    try:
        runs.close_abandoned(store, source_name, clock())
        yield lease
    finally:
        lease.released = True
        stop.set()
        heartbeat.join(5)  # a renewal cut off by the database may take longer: it cannot outlive the release
        try:
            _delete(store, name, holder)
        except Exception:  # noqa: BLE001 - the database is away: the lease is over all the same
            log.warning("could not release the sync lease: it is released when the database is back",
                        exc_info=True, extra={"lease": name, "holder": holder})
            with _ended_lock:
                _ended[holder] = name
            threading.Thread(target=_delete_later, args=(store, name, holder), name=f"release {name}",
                             daemon=True).start()
