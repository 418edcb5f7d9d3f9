"""Audit events: who changed what, through which source, before and after.

Secrets never reach the log: fields named in SECRET_FIELDS are recorded as
changed, without their values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from bridge.clock import now_in
from bridge.services.actor import Actor
from bridge.services.rows import BulkInsert
from bridge.store.db import like_literal, rowcount
from bridge.store.models import AuditEvent

_INSERT_EVENTS = BulkInsert(AuditEvent.__table__)  # type: ignore[arg-type]
SECRET_FIELDS = frozenset({"password_hash", "password", "token_hash", "secret", "code_hash"})
REDACTED = "<redacted>"


# what _plain gives back as it is (a dict or list as well: a JSON column's value)
_AS_THEY_ARE = frozenset({str, int, bool, float, type(None), dict, list})


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
    plain = _AS_THEY_ARE  # the common case answered inline: no call per value
    return {key: [None, REDACTED if key in SECRET_FIELDS else value if type(value) in plain else _plain(value)]
            for key in fields if (value := after[key]) is not None}


def record(
    session: Session,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str | None,
    target_name: str | None = None,
    changes: dict[str, Any] | None = None,
) -> None:
    """One event, INSERTed at once (``record_many``'s precompiled INSERT of a plain row): no
    ORM object for a later flush to write, so the events of a transaction are numbered in
    the order they were recorded, those of batched writes among them."""
    record_many(session, actor, action, target_type, [(target_id, target_name, changes)])


def record_many(
    session: Session,
    actor: Actor,
    action: str,
    target_type: str,
    targets: Iterable[tuple[str | None, str | None, dict[str, Any] | None]],
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


@dataclass(frozen=True)
class AuditQuery:
    """What to look for in the audit log; every field left None matches all. ``action``
    ending in ``*`` is a prefix (``user.*``); ``user`` is a user's id or userName, and finds
    the events about that user by id (once the user is deleted, by the name recorded)."""

    actor: str | None = None
    source: str | None = None
    channel: str | None = None
    action: str | None = None
    user: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def search(session: Session, query: AuditQuery, *, offset: int = 0, limit: int = 100) -> tuple[int, list[AuditEvent]]:
    """The events matching ``query``, newest first: the total and one page."""
    stmt = select(AuditEvent)
    for column, value in ((AuditEvent.actor, query.actor), (AuditEvent.source, query.source),
                          (AuditEvent.channel, query.channel)):
        if value is not None:
            stmt = stmt.where(column == value)
    if query.action is not None:
        if query.action.endswith("*"):
            stmt = stmt.where(AuditEvent.action.like(like_literal(query.action[:-1]) + "%", escape="\\"))
        else:
            stmt = stmt.where(AuditEvent.action == query.action)
    if query.user is not None:
        from bridge.services.users import user_name_key
        from bridge.store.models import User

        living = set(session.scalars(select(User.id).where(
            or_(User.id == query.user, User.user_name_key == user_name_key(query.user)))))
        if living:  # the user's own events, by id: not those of whoever had the name before
            stmt = stmt.where(AuditEvent.target_type == "user", AuditEvent.target_id.in_(living))
        else:  # a deleted user (or an id no longer there): by the id, or by the name the events recorded
            stmt = stmt.where(AuditEvent.target_type == "user",
                              or_(AuditEvent.target_id == query.user, AuditEvent.target_name == query.user))
    if query.since is not None:
        stmt = stmt.where(AuditEvent.at >= query.since)
    if query.until is not None:
        stmt = stmt.where(AuditEvent.at < query.until)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = list(session.scalars(stmt.order_by(AuditEvent.id.desc()).offset(offset).limit(limit)))
    return total, rows
