"""Audit events: who changed what, through which source, before and after.

Secrets never reach the log: fields named in SECRET_FIELDS are recorded as
changed, without their values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from bridge.clock import now_in
from bridge.services.actor import Actor
from bridge.services.rows import BulkInsert
from bridge.store.db import rowcount
from bridge.store.models import AuditEvent

_INSERT_EVENTS = BulkInsert(AuditEvent.__table__)  # type: ignore[arg-type]
SECRET_FIELDS = frozenset({"password_hash", "password", "token_hash", "secret", "code_hash"})
REDACTED = "<redacted>"


_AS_THEY_ARE = frozenset({str, int, bool, float, type(None)})


def _plain(value: Any) -> Any:
    """A JSON-safe rendering of a column value."""
    if type(value) in _AS_THEY_ARE:  # the common case, first and cheap (a StrEnum is no str here)
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """Field -> [before, after] for the fields that changed, secrets redacted."""
    changes: dict[str, list[Any]] = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if key in SECRET_FIELDS:
            changes[key] = [REDACTED if old is not None else None, REDACTED if new is not None else None]
        else:
            changes[key] = [_plain(old), _plain(new)]
    return changes


def created(after: Mapping[str, Any], fields: Sequence[str]) -> dict[str, list[Any]]:
    """``diff({}, {f: after[f] for f in fields})`` without building and comparing two
    snapshots: what a batched creation audits for each of its rows, in a hot loop.
    ``fields`` must be sorted (``diff`` orders the keys)."""
    return {key: [None, REDACTED if key in SECRET_FIELDS else _plain(value)]
            for key in fields if (value := after[key]) is not None}


def record(
    session: Session,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str | None,
    target_name: str | None = None,
    changes: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        actor=actor.name,
        source=actor.source,
        channel=actor.channel,
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_name=target_name,
        changes=changes or {},
        request_id=actor.request_id,
        at=now_in(session),
    )
    session.add(event)
    return event


def record_many(
    session: Session,
    actor: Actor,
    action: str,
    target_type: str,
    targets: Iterable[tuple[str, str | None, dict[str, Any]]],
) -> None:
    """The events ``record`` writes, one per (target id, target name, changes), as one
    executemany INSERT of plain rows: a batched write (an LDAP page of new users) audits
    each target without paying an ORM object and flush per event."""
    at = now_in(session)
    rows = [
        {"at": at, "actor": actor.name, "source": actor.source, "channel": actor.channel, "action": action,
         "target_type": target_type, "target_id": target_id, "target_name": target_name,
         "changes": changes or {}, "request_id": actor.request_id}
        for target_id, target_name, changes in targets
    ]
    _INSERT_EVENTS(session, rows)


def purge(session: Session, before: datetime) -> int:
    """Delete the events older than ``before`` (``audit.retention_days``)."""
    return rowcount(session.execute(delete(AuditEvent).where(AuditEvent.at < before)))
