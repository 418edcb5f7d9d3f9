"""Users of one source into the store: batched upserts keyed by the entry's stable id.

A batch is one transaction, applied whole or not at all; its new entries are
created with one ``create_many`` (the service layer's rules, once per batch where
it can). When one entry of a batch is refused (its userName belongs to another
source, say), the batch is redone entry by entry, each in a savepoint, so the
bad entry costs only itself (and a relinked or conflicting name is told apart).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, Table, select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from bridge.ldap.directory import UserEntry
from bridge.ldap.dn import dn_key
from bridge.ldap.plan import Counts, Plan
from bridge.services import Actor, ServiceError, Services
from bridge.services.errors import UserNameTaken
from bridge.services.unit import UnitOfWork
from bridge.store.models import User

#: errors that concern one entry; anything else (the database is gone...) fails the run
ENTRY_ERRORS = (ServiceError, DataError, IntegrityError)
FIELDS = ("user_name", "display_name", "given_name", "family_name", "email", "active", "ldap_dn", "attributes")
_USERS: Table = User.__table__  # type: ignore[assignment]
#: what ``changes_of`` compares, read as plain columns of the table (plus the id and the key):
#: a Core query, so no ORM row machinery for the 100,000 rows of an unchanged full sync
STORED_COLUMNS = (_USERS.c.id, _USERS.c.source_id, *(_USERS.c[name] for name in FIELDS))


def desired(entry: UserEntry) -> dict[str, Any]:
    email = (entry.email or "").strip() or None
    return {
        "user_name": (entry.user_name or "").strip() or None,
        "display_name": entry.display_name,
        "given_name": entry.given_name,
        "family_name": entry.family_name,
        "email": email,
        "active": entry.active,
        "ldap_dn": entry.dn,
        "attributes": entry.attributes,
    }


def changes_of(user: User | Row[Any], wanted: dict[str, Any], managed: frozenset[str]) -> dict[str, Any]:
    """What differs. Of ``attributes`` the sync owns only the keys of its attribute map
    (``managed``): keys others keep there (the service layer's, say) stay as they are."""
    wanted = {**wanted, "attributes": {**{k: v for k, v in (user.attributes or {}).items() if k not in managed},
                                       **wanted["attributes"]}}
    return {k: v for k, v in wanted.items() if getattr(user, k) != v}


def unchanged(row: Row[Any], entry: UserEntry, managed: frozenset[str]) -> bool:
    """``not changes_of(row, desired(entry), managed)``, answered without building the
    wanted values: what an unchanged full sync asks of every stored row."""
    if (row.ldap_dn != entry.dn or row.active != entry.active or row.display_name != entry.display_name
            or row.given_name != entry.given_name or row.family_name != entry.family_name
            or row.user_name != ((entry.user_name or "").strip() or None)
            or row.email != ((entry.email or "").strip() or None)):
        return False
    stored, read = row.attributes, entry.attributes
    if stored is None:  # None is not the {} the sync would write
        return False
    # The attributes the sync would write equal the stored ones when every value read is
    # stored as it is and every other stored key is one the sync does not own.
    if not stored.items() >= read.items():
        return False
    return len(stored) == len(read) or managed.isdisjoint(stored.keys() - read.keys())


class _RolledBack(Exception):
    """Ends a dry run's trial unit, so that nothing of it is committed."""

    def __init__(self, errors: list[str]):
        super().__init__(f"{len(errors)} entries refused")
        self.errors = errors


def error_text(entry: UserEntry, exc: Exception) -> str:
    message = exc.message if isinstance(exc, ServiceError) else type(exc).__name__
    return f"user {entry.dn}: {message}"


@dataclass
class UserBatchResult:
    counts: Counts = field(default_factory=Counts)
    ids: dict[str, str] = field(default_factory=dict)  # DN key -> user id ("new:SID" in a dry run)
    errors: list[str] = field(default_factory=list)

    def add(self, other: UserBatchResult) -> None:
        self.counts.add(other.counts)
        self.ids.update(other.ids)
        self.errors.extend(other.errors)


class UserWriter:
    def __init__(self, services: Services, actor: Actor, plan: Plan | None, managed: frozenset[str]):
        self.managed = managed  # the attribute keys the sync writes
        self.services = services
        self.actor = actor
        self.source = actor.source
        self.plan = plan  # a dry run when set

    def existing(self, session: Session, batch: Sequence[UserEntry]) -> dict[str, User]:
        ids = [e.source_id for e in batch]
        rows = session.scalars(select(User).where(User.source == self.source, User.source_id.in_(ids)))
        return {u.source_id: u for u in rows if u.source_id is not None}

    def stored(self, batch: Sequence[UserEntry]) -> dict[str, Row[Any]]:
        """source id -> the synced columns of this source's users of ``batch``, as plain
        rows from a read transaction: most entries of a full sync are unchanged, and
        telling so costs no ORM object and no write lock."""
        ids = [e.source_id for e in batch]
        with self.services.store.read() as session:
            rows = session.connection().execute(select(*STORED_COLUMNS).where(
                _USERS.c.source == self.source, _USERS.c.source_id.in_(ids))).all()
            return {row.source_id: row for row in rows}

    def apply(self, batch: Sequence[UserEntry]) -> UserBatchResult:
        if self.plan is not None:
            return self._dry(batch)
        result = UserBatchResult()
        stored = self.stored(batch)
        todo: list[UserEntry] = []
        ids, managed = result.ids, self.managed
        for entry in batch:
            row = stored.get(entry.source_id)
            if row is not None and unchanged(row, entry, managed):
                ids[dn_key(entry.dn)] = row.id
            else:
                todo.append(entry)
        result.counts.unchanged += len(batch) - len(todo)
        if todo:  # new and changed entries only, through the service layer on full objects
            try:
                with self.services.unit(self.actor) as uow:
                    result.add(self._write(uow, todo, isolate=False))
            except ENTRY_ERRORS:
                with self.services.unit(self.actor) as uow:
                    result.add(self._write(uow, todo, isolate=True))
        return result

    def _dry(self, batch: Sequence[UserEntry]) -> UserBatchResult:
        result = UserBatchResult()
        assert self.plan is not None
        existing = self.stored(batch)
        todo: list[UserEntry] = []
        for entry in batch:
            user, wanted = existing.get(entry.source_id), desired(entry)
            key = dn_key(entry.dn)
            if user is None:
                result.counts.added += 1
                result.ids[key] = f"new:{entry.source_id}"
                self.plan.adds.append({"user_name": wanted["user_name"], "dn": entry.dn})
                todo.append(entry)
                continue
            result.ids[key] = user.id
            changed = changes_of(user, wanted, self.managed)
            if not changed:
                result.counts.unchanged += 1
                continue
            todo.append(entry)
            if changed.get("active") is False:
                result.counts.deactivated += 1
            else:
                result.counts.updated += 1
            self.plan.updates.append({"user_name": user.user_name, "dn": entry.dn,
                                      "changes": {k: [getattr(user, k), v] for k, v in changed.items()}})
        if todo:
            for error in self._trial(todo):
                result.counts.errors += 1
                result.errors.append(error)
        return result

    def _trial(self, todo: Sequence[UserEntry]) -> list[str]:
        """What the store would refuse of ``todo`` (the rules of every source, the mapping
        and customer rules, names another source holds): written in a unit that is rolled
        back, with nothing of it audited or recorded as a conflict."""
        try:
            with self.services.unit(self.actor) as uow:
                try:  # the whole batch at once first, as a real run does; entry by entry only on a refusal
                    with uow.session.begin_nested():
                        self._write(uow, todo, isolate=False)
                    errors: list[str] = []
                except ENTRY_ERRORS:
                    errors = self._write(uow, todo, isolate=True).errors
                uow.refusals.clear()
                uow.conflicts.clear()
                raise _RolledBack(errors)
        except _RolledBack as rolled_back:
            return rolled_back.errors

    def _write(self, uow: UnitOfWork, batch: Sequence[UserEntry], *, isolate: bool) -> UserBatchResult:
        result = UserBatchResult()
        existing = self.existing(uow.session, batch)
        if not isolate:
            # Changes first (a rename may free a name a new entry takes), then every new
            # entry in one create_many: one name lookup, one flush, one INSERT per table.
            new = [entry for entry in batch if entry.source_id not in existing]
            for entry in batch:
                if entry.source_id in existing:
                    self._one(uow, entry, existing[entry.source_id], result)
            created = uow.users.create_many([{"source_id": e.source_id, **desired(e)} for e in new])
            for entry, user_id in zip(new, created, strict=True):
                result.ids[dn_key(entry.dn)] = user_id
            result.counts.added += len(created)
            return result
        for entry in batch:
            try:
                with uow.session.begin_nested():
                    self._one(uow, entry, existing.get(entry.source_id), result)
            except ENTRY_ERRORS as exc:
                result.counts.errors += 1
                result.errors.append(error_text(entry, exc))
        return result

    def _one(self, uow: UnitOfWork, entry: UserEntry, user: User | None, result: UserBatchResult) -> None:
        wanted = desired(entry)
        if user is None:
            try:
                user = uow.users.create(source_id=entry.source_id, **wanted)
                result.counts.added += 1
            except UserNameTaken:
                user = self._relink(uow, entry, wanted)
                result.counts.updated += 1
        else:
            changed = changes_of(user, wanted, self.managed)
            if not changed:
                result.counts.unchanged += 1
            else:
                version = user.version
                uow.users.update(user, **changed)
                if user.version == version:
                    result.counts.unchanged += 1  # the service layer found nothing to write
                elif changed.get("active") is False:
                    result.counts.deactivated += 1
                else:
                    result.counts.updated += 1
        result.ids[dn_key(entry.dn)] = user.id

    def _relink(self, uow: UnitOfWork, entry: UserEntry, wanted: dict[str, Any]) -> User:
        """The userName belongs to a user of this same source whose entry is gone (deleted
        and created again, or restored from a backup): the new entry takes it over
        instead of failing on every sync. Another source's user is taken over when an
        ownership rule lets this source; else it is a conflict between the two sources."""
        other = uow.users.find_by_user_name(wanted["user_name"])
        if other is not None and other.source != self.source and uow.may_take_over(other.source):
            # [[ownership.rules]] lets this directory take the name's user over: the update
            # moves it to this source and drops the credentials set under the old one
            return uow.users.update(other, source_id=entry.source_id, **wanted)
        if other is None or other.source != self.source:
            holder = other.source if other else "another user"
            raise UserNameTaken(f"userName {wanted['user_name']!r} is held by {holder}: a conflict between "
                                f"{self.source} and {holder} (an [[ownership.rules]] entry for {self.source} "
                                "would let this source take it over)", field="user_name")
        same_entry = other.ldap_dn is not None and dn_key(other.ldap_dn) == dn_key(entry.dn)
        if other.active and not same_entry:
            raise UserNameTaken(f"userName {wanted['user_name']!r} is also used by {other.ldap_dn}",
                                field="user_name")
        return uow.users.update(other, source_id=entry.source_id, **wanted)
