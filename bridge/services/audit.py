"""Audit events: who changed what, through which source, before and after.

Secrets never reach the log: fields named in SECRET_FIELDS are recorded as
changed, without their values.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from bridge.services.actor import Actor
from bridge.store.models import AuditEvent

SECRET_FIELDS = frozenset({"password_hash", "password", "token_hash", "secret", "code_hash"})
REDACTED = "<redacted>"


def _plain(value: Any) -> Any:
    """A JSON-safe rendering of a column value."""
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
    multi-row INSERT: a batched write (an LDAP page of new users) audits each target
    without paying an ORM object and flush per event."""
    rows = [
        {"actor": actor.name, "source": actor.source, "channel": actor.channel, "action": action,
         "target_type": target_type, "target_id": target_id, "target_name": target_name,
         "changes": changes or {}, "request_id": actor.request_id}
        for target_id, target_name, changes in targets
    ]
    if rows:
        session.execute(insert(AuditEvent), rows)
