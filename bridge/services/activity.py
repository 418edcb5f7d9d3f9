"""SCIM requests per client and minute (``scim_client_minutes``): the additive upsert each
replica's counter (bridge.web.scim_activity) writes its counts with, and the pruning of
old minutes. Every replica adds to the same rows; the status page sums the last hour."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func

from bridge.store.db import Store
from bridge.store.models import ScimClientMinute


@dataclass
class Pending:
    """One client's counts of one minute, not yet written."""

    requests: int = 0
    errors: int = 0
    last_at: datetime | None = None


def add_minutes(store: Store, counts: Mapping[tuple[str, int], Pending], *, prune_before: int | None = None) -> None:
    """Add ``counts`` (by client and minute) to the stored rows, in one transaction; with
    ``prune_before``, delete the minutes older than it as well."""
    with store.write() as session:
        for (client, minute), entry in sorted(counts.items()):
            session.execute(_upsert(store, client, minute, entry))
        if prune_before is not None:
            session.execute(delete(ScimClientMinute).where(ScimClientMinute.minute < prune_before))


def _upsert(store: Store, client: str, minute: int, entry: Pending) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = sqlite.insert if store.is_sqlite else postgresql.insert
    latest: Any = func.max if store.is_sqlite else func.greatest
    table = ScimClientMinute.__table__
    stmt = insert(ScimClientMinute).values(client=client, minute=minute, requests=entry.requests,
                                           errors=entry.errors, last_at=entry.last_at)
    return stmt.on_conflict_do_update(
        index_elements=["client", "minute"],
        set_={"requests": table.c.requests + stmt.excluded.requests,
              "errors": table.c.errors + stmt.excluded.errors,
              "last_at": latest(func.coalesce(table.c.last_at, stmt.excluded.last_at), stmt.excluded.last_at)})
