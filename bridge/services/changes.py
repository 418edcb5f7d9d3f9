"""The authorization change log: what a unit of work changed for ``check``.

Services mark the users and groups whose rights a write can change (a membership,
a grant, an access type...) or ``everything`` (a role, the scope tree, the
config). Just before the transaction commits, the marks are written as rows of a
new generation, bumping the one-row counter in the same transaction. Readers
(the check cache of every replica) compare the counter with what they have seen
and drop exactly the entries named by the rows in between.

The counter row is updated at commit time, so its lock is held only while the
transaction commits, and generations become visible in the order they were
taken: a reader that sees generation N has every change up to N.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from sqlalchemy import Table, delete, event, insert, update
from sqlalchemy.orm import Session

from bridge.services.rows import BulkInsert
from bridge.store.models import AuthzChange, AuthzState

if TYPE_CHECKING:
    from bridge.store.db import Store

USER, GROUP, ALL, TOKEN = "user", "group", "all", "token"
# Beyond this many subjects in one transaction, "everything" is cheaper for readers.
MAX_SUBJECTS = 2000
# Every PRUNE_EVERY generations, change rows older than KEEP_GENERATIONS go.
PRUNE_EVERY = 512
KEEP_GENERATIONS = 20_000


STATE_SQL = "SELECT generation, pruned_below FROM authz_state WHERE id = 1"
# What every transaction that marked something runs as it commits, built once, on the tables
# (no ORM object of either table is ever loaded for a write to keep in step)
_STATE = cast(Table, AuthzState.__table__)
_BUMP = update(_STATE).where(_STATE.c.id == 1).values(generation=_STATE.c.generation + 1).returning(
    _STATE.c.generation)
_INSERT_CHANGES = BulkInsert(cast(Table, AuthzChange.__table__))


def read_generation(store: Store) -> tuple[int, int]:
    """The log's generation and the one below which its rows were pruned: one primary-key
    read on a raw connection (every check and every token lookup makes it)."""
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(STATE_SQL)
        row = cursor.fetchone()
        cursor.close()
    finally:
        raw.close()
    return (int(row[0]), int(row[1])) if row else (0, 0)


class ChangeLog:
    """Collects the authorization-relevant changes of one session's transaction."""

    def __init__(self, session: Session):
        self.session = session
        self._subjects: set[tuple[str, str]] = set()
        # every mark of the transaction: a savepoint's release writes and clears _subjects already
        self._marked: set[tuple[str, str]] = set()
        self._everything = False
        event.listen(session, "before_commit", self._write)

    def user(self, user_id: str) -> None:
        self._subjects.add((USER, user_id))
        self._marked.add((USER, user_id))

    def group(self, group_id: str) -> None:
        self._subjects.add((GROUP, group_id))
        self._marked.add((GROUP, group_id))

    def token(self, token_id: str) -> None:
        """A token revoked or rotated: every replica's token cache drops it
        (bridge.services.token_cache); the check caches ignore it."""
        self._subjects.add((TOKEN, token_id))

    def everything(self) -> None:
        self._everything = True

    def marked(self) -> tuple[set[str], set[str]]:
        """The user ids and group ids marked in the transaction so far, savepoints included (the
        access-type rules settle these; one in a savepoint rolled back is settled for nothing)."""
        return ({s for kind, s in self._marked if kind == USER}, {s for kind, s in self._marked if kind == GROUP})

    @property
    def pending(self) -> bool:
        return self._everything or bool(self._subjects)

    def _write(self, session: Session) -> None:
        if not self.pending:
            return
        if self._everything or len(self._subjects) > MAX_SUBJECTS:
            rows = [(ALL, "*")]
        else:
            rows = sorted(self._subjects)
        self._subjects, self._everything = set(), False
        generation = session.execute(_BUMP).scalar_one_or_none()
        if generation is None:  # a database created without migration 0002's row
            session.execute(insert(AuthzState).values(id=1, generation=1, pruned_below=0))
            generation = 1
        _INSERT_CHANGES(session, [
            {"generation": generation, "subject_type": kind, "subject_id": subject} for kind, subject in rows
        ])
        if generation % PRUNE_EVERY == 0 and generation > KEEP_GENERATIONS:
            floor = generation - KEEP_GENERATIONS
            session.execute(delete(AuthzChange).where(AuthzChange.generation < floor))
            session.execute(update(AuthzState).where(AuthzState.id == 1).values(pruned_below=floor))
