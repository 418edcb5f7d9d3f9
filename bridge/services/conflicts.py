"""Conflicts between sources: a write one source could not make because another holds
the name or the entry (bridge.store.models.SourceConflict).

A conflict is noted where the write is refused and recorded after the unit of work
ended (Services.unit), so it is kept though the refused change rolled back. Seeing it
again counts it; the same write succeeding later resolves it. Its opening and its
resolution are audit events (``conflict``, ``conflict.resolved``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from bridge.clock import now_in
from bridge.names import MAX_KEY_LENGTH, identity_key
from bridge.services import audit
from bridge.services.actor import Actor
from bridge.store.db import rowcount
from bridge.store.models import SourceConflict
from bridge.store.prepared import session_rows

USER_NAME = "user_name"  # a userName another source owns
WRITEBACK = "writeback"  # a directory entry write-back did not create
KINDS = (USER_NAME, WRITEBACK)


@dataclass(frozen=True)
class ConflictNote:
    """A conflict seen during a unit of work, recorded once the unit has ended."""

    kind: str
    source: str
    subject: str
    holder: str
    detail: str


# The open conflicts about some subjects (of one source): asked by every write of a userName,
# so built once (bindparams) rather than per call.
# (Core, on the table: no ORM compile step per run.)
_CONFLICTS = cast(Table, SourceConflict.__table__)
_OPEN = select(_CONFLICTS.c.id, _CONFLICTS.c.subject).where(
    _CONFLICTS.c.kind == bindparam("kind"), _CONFLICTS.c.resolved_at.is_(None),
    _CONFLICTS.c.subject_key.in_(bindparam("keys", expanding=True)))
_OPEN_OF_SOURCE = _OPEN.where(_CONFLICTS.c.source == bindparam("source"))
# one subject of one source (every single create's name): a Prepared read, no IN list
_OPEN_ONE_OF_SOURCE = select(_CONFLICTS.c.id, _CONFLICTS.c.subject).where(
    _CONFLICTS.c.kind == bindparam("kind"), _CONFLICTS.c.resolved_at.is_(None),
    _CONFLICTS.c.subject_key == bindparam("key"), _CONFLICTS.c.source == bindparam("source"))
# Whether any conflict of a kind is open (by ix_source_conflicts_open): a batch of thousands
# of names asks this first, and most stores have none open
_ANY_OPEN = select(SourceConflict.id).where(SourceConflict.resolved_at.is_(None),
                                            SourceConflict.kind == bindparam("kind")).limit(1)


def record(session: Session, actor: Actor, notes: Iterable[ConflictNote], *, now: datetime | None = None) -> None:
    """Open each noted conflict, or count it again when it is open already."""
    now = now or now_in(session)
    for note in notes:
        key = identity_key(note.subject)[:MAX_KEY_LENGTH]
        row = session.scalar(select(SourceConflict).where(
            SourceConflict.kind == note.kind, SourceConflict.source == note.source,
            SourceConflict.subject_key == key).with_for_update())
        if row is None:
            row = SourceConflict(kind=note.kind, source=note.source, subject=note.subject[:256], subject_key=key,
                                 holder=note.holder, detail=note.detail, count=1, first_seen=now, last_seen=now)
            session.add(row)
        elif row.resolved_at is not None:
            row.resolved_at, row.first_seen, row.count = None, now, 1
        else:
            row.count += 1
            row.last_seen, row.holder, row.detail = now, note.holder, note.detail
            continue
        row.last_seen, row.holder, row.detail = now, note.holder, note.detail
        session.flush()
        audit.record(session, actor, "conflict", note.kind, None, note.subject,
                     {"conflict": [None, f"{note.source} vs {note.holder}: {note.detail}"]})


def resolve(session: Session, actor: Actor, kind: str, source: str | None, subjects: Sequence[str],
            *, now: datetime | None = None, why: str = "written") -> int:
    """Close the open conflicts of ``source`` (None: of any source) about ``subjects``:
    their write went through (``why="written"``), or the holder gave the name up
    (``"released"``)."""
    if len(subjects) > 1 and session.execute(_ANY_OPEN, {"kind": kind}).first() is None:
        return 0  # nothing open to close: no keys made, no statement with a parameter per name
    keys = {identity_key(s)[:MAX_KEY_LENGTH] for s in subjects}
    if not keys:
        return 0
    if source is None:
        found = session.execute(_OPEN, {"kind": kind, "keys": sorted(keys)}).all()
    elif len(keys) == 1:
        found = session_rows(session, _OPEN_ONE_OF_SOURCE, {"kind": kind, "key": next(iter(keys)), "source": source})
    else:
        found = session.execute(_OPEN_OF_SOURCE, {"kind": kind, "keys": sorted(keys), "source": source}).all()
    return _close(session, actor, found, why, now)


def close(session: Session, actor: Actor, conflict_id: int, *, now: datetime | None = None) -> bool:
    """An operator closes one open conflict (settled by hand); False if there is none open."""
    rows = session.execute(select(SourceConflict.id, SourceConflict.subject, SourceConflict.kind).where(
        SourceConflict.id == conflict_id, SourceConflict.resolved_at.is_(None))).all()
    return _close(session, actor, rows, "closed by an operator", now) == 1


def _close(session: Session, actor: Actor, rows: Sequence[Any], why: str, now: datetime | None) -> int:
    if not rows:
        return 0
    session.execute(update(SourceConflict).where(SourceConflict.id.in_([r.id for r in rows]))
                    .values(resolved_at=now or now_in(session)))
    for row in rows:
        kind = getattr(row, "kind", None) or "conflict"
        audit.record(session, actor, "conflict.resolved", kind, str(row.id), row.subject, {"resolved": [None, why]})
    return len(rows)


def purge(session: Session, before: datetime) -> int:
    """Delete conflicts resolved before ``before`` (the audit log keeps their story)."""
    result = session.execute(delete(SourceConflict).where(SourceConflict.resolved_at < before))
    return rowcount(result)


def open_conflicts(session: Session, limit: int = 100) -> list[SourceConflict]:
    return list(session.scalars(select(SourceConflict).where(SourceConflict.resolved_at.is_(None))
                                .order_by(SourceConflict.last_seen.desc()).limit(limit)))


def open_total(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(SourceConflict).where(
        SourceConflict.resolved_at.is_(None))) or 0)


def open_counts(session: Session) -> dict[str, int]:
    """Open conflicts by kind (every kind present, 0 when none)."""
    counts = dict.fromkeys(KINDS, 0)
    for kind, n in session.execute(select(SourceConflict.kind, func.count()).where(
            SourceConflict.resolved_at.is_(None)).group_by(SourceConflict.kind)):
        counts[kind] = n
    return counts
