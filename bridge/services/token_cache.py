"""The tokens one process has seen, so that a request is not a database lookup of its
token: the SHA-256 of the presented secret names the identity it proved.

Exact on every replica, as the check cache is (bridge.mapping.cache): revoking or
rotating a token marks it in the authorization change log (``ChangeLog.token``), in
the transaction that revokes it; each lookup reads the log's generation (one
primary-key read) and drops the tokens named since. A token revoked on one replica is
refused by the next request on any replica. Only proofs are kept, never a refusal:
an unknown or wrong token is looked up (and refused) each time. A token's
``last_used_at`` is still written at most once a minute.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from bridge.clock import Clock
from bridge.services.changes import ALL, TOKEN, read_generation
from bridge.services.tokens import LAST_USED_RESOLUTION, TOKEN_FORMAT, TokenIdentity, authenticate, hash_token
from bridge.store.db import Store
from bridge.store.models import ApiToken, AuthzChange, TokenKind

MAX_TOKENS = 10_000  # distinct valid tokens kept; past it, the cache starts afresh


@dataclass
class _Seen:
    identity: TokenIdentity
    last_used: datetime


class TokenCache:
    def __init__(self, store: Store, clock: Callable[[], Clock]):
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._applied = -1
        self._seen: dict[str, _Seen] = {}
        self.lookups = 0  # answered from the database (a miss, or a refusal)

    def authenticate(self, presented: str, kind: TokenKind) -> TokenIdentity | None:
        """The identity of a valid, unrevoked token of ``kind``; None for anything else."""
        presented = presented.strip()
        if not TOKEN_FORMAT.match(presented):
            return None
        key = hash_token(presented)
        generation = self._sync()
        with self._lock:
            seen = self._seen.get(key)
        clock = self._clock()
        if seen is None:
            self.lookups += 1
            identity = authenticate(self.store, presented, kind, clock)
            if identity is not None:
                with self._lock:
                    if self._applied == generation:  # nothing revoked while it was looked up
                        if len(self._seen) >= MAX_TOKENS:
                            self._seen.clear()
                        self._seen[key] = _Seen(identity, clock())
            return identity
        if seen.identity.kind != kind:
            return None
        now = clock()
        if now - seen.last_used > LAST_USED_RESOLUTION:
            seen.last_used = now
            with self.store.write() as session:
                row = session.get(ApiToken, seen.identity.id)
                if row is not None:
                    row.last_used_at = now
        return seen.identity

    def _sync(self) -> int:
        """Drop the tokens revoked or rotated since the last look; the generation applied."""
        generation, pruned_below = read_generation(self.store)
        with self._lock:
            if generation <= self._applied:
                return self._applied
            if self._applied < 0 or self._applied + 1 < pruned_below:
                self._seen.clear()
            else:
                with self.store.engine.connect() as conn:
                    changed = conn.execute(select(AuthzChange.subject_type, AuthzChange.subject_id).where(
                        AuthzChange.generation > self._applied, AuthzChange.generation <= generation,
                        AuthzChange.subject_type.in_((TOKEN, ALL)))).all()
                if read_generation(self.store)[1] > self._applied + 1:
                    # a prune committed between the two reads may have taken rows we needed
                    self._seen.clear()
                elif any(kind == ALL for kind, _ in changed):
                    self._seen.clear()
                else:
                    gone = {subject for _, subject in changed}
                    if gone:
                        self._seen = {k: v for k, v in self._seen.items() if v.identity.id not in gone}
            self._applied = generation
            return generation
