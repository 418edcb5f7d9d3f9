"""SCIM requests and errors per client, for the status page's "last hour".

The SCIM app counts in memory (a lock and a dict: no database work per request);
a small thread of this process adds the counts to per-minute rows
(``scim_client_minutes``) every ``FLUSH_SECONDS`` with an additive upsert, so
every replica contributes to the same rows and the page sums the last hour. The
thread runs only while there is something to write: it ends after a quiet spell
and the next request starts it again, so an idle process (or a test's runtime)
keeps no thread. ``stop`` (the daemon's, through ``Runtime.close``) ends the thread
and flushes what is left. The rows are written by bridge.services.activity.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from bridge.clock import utcnow
from bridge.services.activity import Pending, add_minutes
from bridge.store.models import ApiToken, ScimClientMinute, TokenKind

if TYPE_CHECKING:
    from bridge.runtime import Runtime
    from bridge.store.db import Store

log = logging.getLogger(__name__)

FLUSH_SECONDS = 10.0
QUIET_FLUSHES = 6  # the thread ends after this many flushes with nothing to write
KEEP_MINUTES = 48 * 60  # rows older than this are pruned
NO_TOKEN = ""  # the client name under which requests without a valid token count


@dataclass(frozen=True)
class ClientActivity:
    """One SCIM client on the status page."""

    name: str  # NO_TOKEN for requests without a valid token
    revoked: bool
    last_request: datetime | None
    requests_last_hour: int
    errors_last_hour: int


def minute_of(at: datetime) -> int:
    return int(at.timestamp()) // 60


class ScimActivity:
    """This process's counts, not yet written; see the module's docstring."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = utcnow,
                 flush_seconds: float = FLUSH_SECONDS):
        self.store = store
        self.clock = clock
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one flush at a time (thread, page, exit)
        self._pending: dict[tuple[str, int], Pending] = {}
        self._thread: threading.Thread | None = None
        self._pruned_at = 0.0
        self._failing = False
        self._stopped = threading.Event()

    def record(self, client: str | None, status: int) -> None:
        """Count one request; ``status`` >= 400 counts as an error too."""
        now = self.clock()
        key = (client or NO_TOKEN, minute_of(now))
        with self._lock:
            entry = self._pending.setdefault(key, Pending())
            entry.requests += 1
            entry.errors += status >= 400
            entry.last_at = now
            if (self._thread is None or not self._thread.is_alive()) and not self._stopped.is_set():
                self._thread = threading.Thread(target=_flush_loop, args=(weakref.ref(self),),
                                                name="scim-activity-flush", daemon=True)
                self._thread.start()

    def flush(self) -> bool:
        """Write the pending counts; True when there was something to write. On a database
        error the counts stay pending for the next attempt."""
        with self._flushing:
            with self._lock:
                taken, self._pending = self._pending, {}
            if not taken:
                return False
            prune = time.monotonic() - self._pruned_at > 3600
            try:
                add_minutes(self.store, taken,
                            prune_before=minute_of(self.clock()) - KEEP_MINUTES if prune else None)
                if prune:
                    self._pruned_at = time.monotonic()
            except SQLAlchemyError as exc:
                self._put_back(taken)
                if not self._failing:
                    log.warning("cannot write the SCIM request counts (kept for the next try): %s",
                                type(exc).__name__)
                self._failing = True
                return True
            if self._failing:
                log.info("writing the SCIM request counts works again")
            self._failing = False
            return True

    def _put_back(self, taken: dict[tuple[str, int], Pending]) -> None:
        with self._lock:
            for key, entry in taken.items():
                current = self._pending.setdefault(key, Pending())
                current.requests += entry.requests
                current.errors += entry.errors
                if current.last_at is None or (entry.last_at and entry.last_at > current.last_at):
                    current.last_at = entry.last_at

    def stop(self) -> None:
        """End the flush thread and write what is left (the process is stopping)."""
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(self.flush_seconds + 5)
        try:
            self.flush()
        except SQLAlchemyError as exc:
            log.warning("the last SCIM request counts were not written: %s", type(exc).__name__)


def _flush_loop(ref: weakref.ref[ScimActivity]) -> None:
    """Flush every few seconds while there is traffic; end after a quiet spell or when
    the activity object is gone (its runtime was dropped)."""
    quiet = 0
    while quiet < QUIET_FLUSHES:
        activity = ref()
        if activity is None:
            return
        interval, stopped = activity.flush_seconds, activity._stopped
        del activity
        if stopped.wait(interval):
            return  # stop() flushes the rest
        activity = ref()
        if activity is None:
            return
        quiet = 0 if activity.flush() else quiet + 1
        del activity


def activity_for(rt: Runtime) -> ScimActivity:
    """The runtime's counter (``Runtime.scim_activity``)."""
    return rt.scim_activity


def client_activity(rt: Runtime, now: datetime | None = None) -> list[ClientActivity]:
    """Every SCIM client token (and the requests without a valid token, if any) with its
    last request and its requests and errors in the last 60 minutes, summed over replicas."""
    activity_for(rt).flush()  # this process's latest counts first
    now = now or activity_for(rt).clock()
    since = minute_of(now) - 59
    with rt.store.read() as session:
        tokens = list(session.scalars(select(ApiToken).where(ApiToken.kind == TokenKind.scim)
                                      .order_by(ApiToken.name)))
        sums = {row.client: row for row in session.execute(
            select(ScimClientMinute.client, func.sum(ScimClientMinute.requests).label("requests"),
                   func.sum(ScimClientMinute.errors).label("errors"))
            .where(ScimClientMinute.minute >= since).group_by(ScimClientMinute.client))}
        last = {client: at for client, at in session.execute(
            select(ScimClientMinute.client, func.max(ScimClientMinute.last_at)).group_by(ScimClientMinute.client))}
    out = []
    for token in tokens:
        if token.revoked_at is not None and token.name not in sums:
            continue  # a revoked client that has been quiet for an hour is history
        found = sums.get(token.name)
        seen = [t for t in (token.last_used_at, last.get(token.name)) if t is not None]
        out.append(ClientActivity(token.name, token.revoked_at is not None, max(seen) if seen else None,
                                  int(found.requests) if found else 0, int(found.errors) if found else 0))
    anonymous = sums.get(NO_TOKEN)
    if anonymous is not None:
        out.append(ClientActivity(NO_TOKEN, False, last.get(NO_TOKEN), int(anonymous.requests),
                                  int(anonymous.errors)))
    return out
