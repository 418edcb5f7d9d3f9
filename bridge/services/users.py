"""Users: creation, change, deactivation and deletion, with the store's invariants.

The invariants hold whoever writes, because SCIM, LDAP sync, the admin API, the
CLI and the CSV import all come through here:

- userName is unique by its identity key (bridge.names: case, width, spacing, invisible characters);
- a locally created userName has no white space and at least 5 characters;
- the e-mail column holds an address or nothing: a local user needs one, a
  source's value that is no address stays in its attributes only;
- there is always at least one active admin once one exists;
- only the local operator, or a SCIM client the config allows, makes admins;
- an access type a mapping rule set is the rule's: the operator's change of it is
  refused, a source's becomes the user's own value (back when no rule applies);
- a source changes only its own users, unless an ownership rule lets it take over;
- the mapping rules on attributes, and the customer rules (rights-group,
  RemoteUsers, remote access), apply to every write (bridge.services.customers);
- a change that can change a ``check`` answer is logged for every replica's cache;
- every change writes an audit event.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Unpack, cast

from sqlalchemy import ColumnElement, Table, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict, manager_of_class

from bridge.mapping.rules import rule_text
from bridge.names import identity_key, key_problem
from bridge.services import audit, conflicts, validate
from bridge.services.accounts import EMAIL_LINK, RESET_LINK
from bridge.services.actor import LOCAL_SOURCE
from bridge.services.addresses import mail_address
from bridge.services.conflicts import USER_NAME as USER_NAME_CONFLICT
from bridge.services.errors import (
    Conflict,
    InvalidValue,
    LastAdmin,
    NotFound,
    SourceConflict,
    UserNameTaken,
    VersionMismatch,
)
from bridge.services.fields import UserChanges
from bridge.services.rows import BulkInsert, RowDefaults
from bridge.store.among import in_chunks
from bridge.store.db import like_literal
from bridge.store.models import AccessType, Customer, User, UserKind
from bridge.store.prepared import session_rows

if TYPE_CHECKING:
    from bridge.services.unit import UnitOfWork

MIN_LOCAL_USER_NAME = 5
WHITESPACE = re.compile(r"\s")

# Identity fields belong to the user's source; portal fields are the portal's own
# decisions, which a local operator may make for any user.
IDENTITY_FIELDS = (
    "user_name",
    "display_name",
    "given_name",
    "family_name",
    "email",
    "preferred_language",
    "timezone",
    "active",
    "external_id",
    "source_id",
    "ldap_dn",
    "attributes",
)
PORTAL_FIELDS = ("kind", "access_type", "customer_id", "customer_admin", "ip_allowlist")
SECRET_FIELDS = ("password_hash",)
# set by the access-type rules only (bridge.services.access), never written by a caller
RULE_FIELDS = ("access_type_rule", "access_type_own")
AUDITED_FIELDS = (IDENTITY_FIELDS + PORTAL_FIELDS + SECRET_FIELDS + RULE_FIELDS
                  + ("source", "must_change_password", "locked_until"))
WRITABLE_FIELDS = frozenset(IDENTITY_FIELDS + PORTAL_FIELDS)
# Fields whose change can change an answer of check (attributes: through mapping rules).
AUTHZ_FIELDS = frozenset({"user_name", "active", "access_type", "attributes", "kind", "customer_id",
                          "customer_admin"})


def matching(text: str) -> ColumnElement[bool]:
    """Users whose id is ``text``, or whose userName (as the identity key compares it),
    display name or e-mail holds it: the admin API's ``q`` and a bulk change's selection."""
    key, folded = f"%{like_literal(user_name_key(text))}%", f"%{like_literal(text.casefold())}%"
    return or_(User.id == text, User.user_name_key.like(key, escape="\\"),
               func.lower(User.display_name).like(folded, escape="\\"),
               func.lower(User.email).like(folded, escape="\\"))


def name_prefix(text: str) -> ColumnElement[bool]:
    """Users whose userName starts with ``text`` (as the identity key compares it)."""
    return User.user_name_key.like(like_literal(user_name_key(text)) + "%", escape="\\")


UUID_SHAPE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


# The identity keys of recent userNames: more than a sync's write batch (5,000) holds, since a
# batch asks for every name once before it asks again (a cache smaller than the batch missed
# every time); names longer than a stored one could be are not kept (a client's megabyte of
# "userName" would otherwise stay, 16,384 times over).
_cached_key = functools.lru_cache(maxsize=16384)(identity_key)
CACHED_NAME_LENGTH = 300


def user_name_key(user_name: str) -> str:
    """The identity of a userName: equal for names that differ only in case, width, spacing
    or invisible characters (bridge.names). A function of the name alone, asked several
    times per write (the lookup, the checks, the row): the latest answers are kept."""
    return _cached_key(user_name) if len(user_name) <= CACHED_NAME_LENGTH else identity_key(user_name)


def with_email(attributes: dict[str, Any] | None, email: str | None) -> dict[str, Any]:
    """The SCIM ``emails`` list kept in step with the e-mail column, for users written by
    a source that knows one address only (admin API, CLI, LDAP): SCIM shows and filters
    every user's address the same way."""
    attributes = dict(attributes or {})
    if not email:
        return attributes
    emails = [dict(entry) for entry in attributes.get("emails") or []]
    if any(entry.get("value") == email for entry in emails):
        return attributes
    primary = next((e for e in emails if e.get("primary")), emails[0] if emails else None)
    if primary is None:
        emails.append({"value": email, "primary": True})
    else:
        primary["value"] = email
    attributes["emails"] = emails
    return attributes


_USER_ROWS = RowDefaults(User.__table__)  # type: ignore[arg-type]
_USER_CLASS = manager_of_class(User)
_INSERT_USERS = BulkInsert(User.__table__)  # type: ignore[arg-type]
# the audited fields in the order ``audit.diff`` puts them
AUDITED_ORDER = tuple(sorted(AUDITED_FIELDS))
# Statements of every write, built once (building one costs about what SQLite takes to run it)
_BY_NAME_KEY = select(User).where(User.user_name_key == bindparam("key"))
# Core statements on the table (not the ORM entity): a session runs them without the ORM's
# compile step, about 15 µs less each; one name (a SCIM or API create) is compared, not listed.
_USER_KEYS = cast(Table, User.__table__).c.user_name_key
_STORED_NAME_KEYS = select(_USER_KEYS).where(_USER_KEYS.in_(bindparam("keys", expanding=True)))
_STORED_NAME_KEY = select(_USER_KEYS).where(_USER_KEYS == bindparam("key"))


def _lost_user_name(exc: IntegrityError) -> bool:
    """Whether the unique index on the case-folded userName refused the write."""
    return "user_name_key" in str(exc.orig) or "uq_users_user_name_key" in str(exc.orig)


def snapshot(user: User) -> dict[str, Any]:
    return {field: getattr(user, field) for field in AUDITED_FIELDS}


class _TakenNames:
    """The userName keys a creation may not use: those the store has (looked up before)
    and those of the rows of the same batch prepared before."""

    def __init__(self, stored: set[str]):
        self.stored = stored
        self.batch: set[str] = set()

    def check(self, key: str, user_name: str) -> None:
        if key in self.stored:
            raise UserNameTaken(f"userName {user_name!r} is already taken",
                                field="user_name")
        if key in self.batch:
            raise UserNameTaken(f"userName {user_name!r} is already taken by another "
                                "user of the same batch", field="user_name")

    def claim(self, key: str) -> None:
        self.batch.add(key)


@dataclass
class UserService:
    uow: UnitOfWork

    # -- reads -----------------------------------------------------------------

    def get(self, user_id: str) -> User:
        user = self.uow.session.get(User, user_id) if "\x00" not in user_id else None  # (no row holds one)
        if user is None:
            raise NotFound(f"no user with id {user_id}")
        return user

    def by_ref(self, ref: str, *, field: str = "user_id") -> User:
        """The user a caller names by id or by userName (an id wins, as in check): every
        route that takes a user takes either."""
        user = (self.uow.session.get(User, ref) or self.find_by_user_name(ref)) if "\x00" not in ref else None
        if user is None:
            raise NotFound(f"no user {ref!r} (by id or userName)", field=field)
        return user

    def find_by_user_name(self, user_name: str) -> User | None:
        return self.uow.session.scalar(_BY_NAME_KEY, {"key": user_name_key(user_name)})

    # -- writes ----------------------------------------------------------------

    def create(self, **fields: Any) -> User:
        """Create a user owned by the actor's source, as an ORM object for callers that go
        on with it (SCIM, the admin API, the CLI). The row is written as ``create_many``
        writes one (a plain INSERT, its audit event another), and the object joins the
        session as the stored row it is: no flush of an ORM object, no reload."""
        session = self.uow.session
        taken = _TakenNames(self._stored_keys([fields]))
        row = self._prepared(dict(fields), self.uow.actor.source, taken)
        self._insert_one(row)
        # The object of the stored row, as a query would load it: every column set without
        # attribute events (the row is what was written, nothing is pending), then given
        # its identity (make_transient_to_detached) and attached.
        user = _USER_CLASS.new_instance()
        instance_dict(user).update(row)
        make_transient_to_detached(user)
        session.add(user)
        audit.record_many(session, self.uow.actor, "user.create", "user",
                          [(row["id"], row["user_name"], audit.created(row, AUDITED_ORDER))])
        self._names_resolved([user.user_name])
        if user.kind == UserKind.external:
            self.uow.customers.sync_memberships(user)
        self.uow.access.touch([user.id])  # an access-type rule on its attributes applies at once
        return user

    def create_many(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Create users owned by the actor's source, all or none, and return their ids in
        the order of ``rows``: the rules of ``create`` row by row, but the name lookup,
        the INSERT of the users and that of their audit rows once per batch (an LDAP page,
        say), as plain rows (no ORM object per user), which is what a bulk load pays for.

        A userName taken in the store, or by an earlier row of the batch, refuses the
        whole batch with UserNameTaken; callers that want the other rows (the LDAP
        sync) redo the batch one ``create`` at a time."""
        source, now = self.uow.actor.source, self.uow.now()  # one time for the batch: one to format for the INSERT
        taken = _TakenNames(self._stored_keys(rows))
        prepared = [self._prepared(dict(fields), source, taken, note=False, now=now) for fields in rows]
        if not prepared:
            return []
        self._insert_unique(prepared)
        audit.record_many(self.uow.session, self.uow.actor, "user.create", "user",
                          ((row["id"], row["user_name"], audit.created(row, AUDITED_ORDER)) for row in prepared))
        self._names_resolved([row["user_name"] for row in prepared])  # their events after the creations
        external = [row["id"] for row in prepared if row["kind"] == UserKind.external]
        for user_id in external:  # the customer rules' memberships need the user object
            self.uow.customers.sync_memberships(self.get(user_id))
        self.uow.access.touch(row["id"] for row in prepared)
        return [row["id"] for row in prepared]

    def update(self, user: User, *, expected_version: int | None = None, check_ownership: bool = True,
               **given: Unpack[UserChanges]) -> User:
        """Change fields of ``user``; only what differs is written and audited. The portal's
        own rules (customers) pass ``check_ownership=False`` to deactivate any source's user."""
        changes: dict[str, Any] = dict(given)
        unknown = set(changes) - WRITABLE_FIELDS
        if unknown:
            raise InvalidValue(f"unknown user fields: {', '.join(sorted(unknown))}")
        if expected_version is not None and expected_version != user.version:
            raise VersionMismatch(f"user {user.user_name} is at version {user.version}, not {expected_version}")
        changes = self._normalise(changes, user.source)
        if user.source == LOCAL_SOURCE and "email" in changes and changes["email"] is None:
            raise InvalidValue("a local user needs an e-mail address (invitations and resets go there)",
                               field="email")
        changed = {k: v for k, v in changes.items() if getattr(user, k) != v}
        if "email" in changed and "attributes" not in changes:
            changed["attributes"] = with_email(user.attributes, changed["email"])
        elif "attributes" in changed and not (changed["attributes"] or {}).get("emails"):
            changed["attributes"] = with_email(changed["attributes"], changed.get("email", user.email))
        if changed.get("attributes") == user.attributes:
            changed.pop("attributes", None)
        if changed and check_ownership:
            self._check_ownership(user, changed)
        # The portal's rules decide last and whoever writes (bridge.services.customers).
        effects = self.uow.customers.rule_effects(user.source, {**snapshot(user), **changed})
        if changes.get("active") is True and effects.get("active") is False and self.uow.actor.source == LOCAL_SOURCE:
            customer = self.uow.session.get(Customer, effects.get("customer_id") or user.customer_id)
            number = customer.number if customer is not None else "?"
            raise Conflict(f"{user.user_name} stays inactive: the remote access of customer {number} is off "
                           f"(turn it on first)", field="active")
        for key, value in effects.items():
            if getattr(user, key) != value:
                changed[key] = value
            else:
                changed.pop(key, None)
        if not changed:
            return user
        if "user_name" in changed:
            new_name = self._check_user_name(changed["user_name"], user.source)
            if user_name_key(new_name) != user.user_name_key:
                self._ensure_user_name_free(new_name)
            changed["user_name"] = new_name
        if changed.get("access_type") == AccessType.admin:
            self._check_may_grant_admin(user.id, user.user_name)
        if "access_type" in changed and user.access_type_rule is not None:
            self._keep_rule_access_type(user, changed)
            if not changed:
                return user
        self.guard_last_admin(user, changed)
        before = snapshot(user)
        for key, value in changed.items():
            setattr(user, key, value)
        if "user_name" in changed:
            user.user_name_key = user_name_key(user.user_name)
        if "active" in changed:
            user.deactivated_at = None if user.active else self.uow.now()
            if not user.active:
                user.sessions_valid_after = user.deactivated_at  # its operator sessions end for good
        if self._takes_over(user):
            self._change_owner(user)
        user.updated_at = self.uow.now()
        self._flush_unique([user])
        if "user_name" in changed or before["source"] != user.source:
            self._names_resolved([user.user_name])
        if "user_name" in changed and user_name_key(before["user_name"]) != user.user_name_key:
            self._name_released(before["user_name"])
        action = "user.deactivate" if changed.get("active") is False else "user.update"
        audit.record(self.uow.session, self.uow.actor, action, "user", user.id, user.user_name,
                     audit.diff(before, snapshot(user)))
        if set(changed) & AUTHZ_FIELDS or before["source"] != user.source:
            self.uow.changes.user(user.id)  # the check caches of every replica drop this user
        if set(changed) & {"kind", "customer_id", "customer_admin"}:
            self.uow.customers.sync_memberships(user)
        return user

    def deactivate(self, user: User) -> User:
        return self.update(user, active=False)

    def delete(self, user: User, *, expected_version: int | None = None, check_ownership: bool = True) -> None:
        if expected_version is not None and expected_version != user.version:
            raise VersionMismatch(f"user {user.user_name} is at version {user.version}, not {expected_version}")
        if check_ownership:
            self._check_ownership(user, {"active": False})
        self.guard_last_admin(user, {"active": False})
        audit.record(self.uow.session, self.uow.actor, "user.delete", "user", user.id, user.user_name,
                     audit.diff(snapshot(user), {}))
        self.uow.changes.user(user.id)
        self.uow.session.delete(user)
        self.uow.session.flush()
        self._name_released(user.user_name)

    def set_password_hash(self, user: User, password_hash: str, *, must_change: bool = False) -> None:
        """Store a new password hash (the accounts module hashes and checks policy)."""
        before = snapshot(user)
        user.password_hash = password_hash
        user.password_changed_at = self.uow.now()
        user.sessions_valid_after = user.password_changed_at  # a new password ends the operator sessions
        user.must_change_password = must_change
        user.updated_at = self.uow.now()
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "user.password", "user", user.id, user.user_name,
                     audit.diff(before, snapshot(user)))

    # -- invariants ------------------------------------------------------------

    def _check_user_name(self, user_name: Any, source: str) -> str:
        if not isinstance(user_name, str) or not user_name.strip():
            raise InvalidValue("userName is required", field="user_name")
        problem = key_problem(user_name, "userName", user_name_key(user_name))
        if problem is not None:
            raise InvalidValue(problem, field="user_name")
        user_name = str(user_name).strip()
        if len(user_name) > 256:
            raise InvalidValue("userName is longer than 256 characters", field="user_name")
        key = user_name_key(user_name)  # a name in other widths or cases reads as the same id
        if UUID_SHAPE.match(key) and self.uow.session.get(User, key.lower()) is not None:
            # users are named by id or userName on every route, the id first: a userName that
            # is another user's id would turn the operator's word about one user into another's
            raise UserNameTaken(f"userName {user_name!r} is another user's id", field="user_name")
        if source == LOCAL_SOURCE:
            if WHITESPACE.search(user_name):
                raise InvalidValue(f"userName {user_name!r} contains white space", field="user_name")
            if len(user_name) < MIN_LOCAL_USER_NAME:
                raise InvalidValue(
                    f"userName {user_name!r} is shorter than {MIN_LOCAL_USER_NAME} characters", field="user_name"
                )
        return str(user_name)

    def _ensure_user_name_free(self, user_name: str) -> None:
        existing = self.find_by_user_name(user_name)
        if existing is not None:
            raise self._name_taken(user_name, existing)

    def _names_resolved(self, names: Sequence[str]) -> None:
        """The actor's source now holds ``names``: its conflicts over them are over."""
        conflicts.resolve(self.uow.session, self.uow.actor, USER_NAME_CONFLICT, self.uow.actor.source, names)

    def _name_released(self, name: str) -> None:
        """Nobody holds ``name`` any more: the conflicts of other sources over it are over
        (their next write of it will go through)."""
        conflicts.resolve(self.uow.session, self.uow.actor, USER_NAME_CONFLICT, None, [name], why="released")

    def _name_taken(self, user_name: str, holder: User | None = None) -> UserNameTaken:
        """The refusal of a userName the store has (under the same identity key). Held by
        another source (that no ownership rule lets the actor's take over), it is a conflict
        between sources: noted for the status page with both sources named, while the
        error says nothing of whose it is."""
        holder = holder or self.find_by_user_name(user_name)
        if holder is not None and holder.source != self.uow.actor.source and not self.uow.may_take_over(holder.source):
            self.uow.note_conflict(USER_NAME_CONFLICT, user_name, holder.source,
                                   f"userName {user_name!r} is held by {holder.user_name!r} of {holder.source}")
        return UserNameTaken(f"userName {user_name!r} is already taken (names equal but for case, width, "
                             "spacing or invisible characters are the same)", field="user_name")

    def _prepared(self, fields: dict[str, Any], source: str, taken: _TakenNames, *,
                  note: bool = True, now: datetime | None = None) -> dict[str, Any]:
        """A new, validated user of ``source`` as a complete row of the users table (every
        column, defaults filled in): the one place where the rules of a creation live
        (``create`` makes an ORM object of it, ``create_many`` inserts it as it is).
        ``taken`` answers for the store and for the rows prepared before this one."""
        unknown = set(fields) - WRITABLE_FIELDS
        if unknown:
            raise InvalidValue(f"unknown user fields: {', '.join(sorted(unknown))}")
        user_name = self._check_user_name(fields.get("user_name"), source)
        fields = self._normalise(fields, source)
        key = user_name_key(user_name)
        if key in taken.stored:  # create_many's callers redo one by one, and note conflicts then
            raise self._name_taken(user_name) if note else UserNameTaken(f"userName {user_name!r} is already taken",
                                                                         field="user_name")
        taken.check(key, user_name)
        fields.update(self.uow.customers.rule_effects(  # mapping rules, remote access (bridge.services.customers)
            source, {"active": True, "kind": UserKind.internal, **fields, "user_name": user_name}))
        if fields.get("email") and not (fields.get("attributes") or {}).get("emails"):
            fields["attributes"] = with_email(fields.get("attributes"), fields["email"])
        if source == LOCAL_SOURCE and not fields.get("email"):
            raise InvalidValue("a local user needs an e-mail address (invitations and resets go there)",
                               field="email")
        if fields.get("access_type") == AccessType.admin:
            self._check_may_grant_admin(None, user_name)
        now = now or self.uow.now()
        row = _USER_ROWS.new_row()
        row.update(fields)
        # the id is known before the INSERT, so a batch is one executemany
        row.update(user_name=user_name, user_name_key=key, source=source, created_at=now, updated_at=now)
        taken.claim(key)
        return row

    def _stored_keys(self, rows: Sequence[Mapping[str, Any]]) -> set[str]:
        """The userName keys of ``rows`` that the store has already."""
        return self._keys_in_store({user_name_key(name) for fields in rows
                                    if isinstance(name := fields.get("user_name"), str) and name.strip()
                                    and "\x00" not in name})  # refused by _check_user_name; no row has one

    def _keys_in_store(self, keys: set[str]) -> set[str]:
        """Which of ``keys`` the store has: one query per IN_CHUNK names, not one per row."""
        if len(keys) == 1:  # a single create (SCIM, the API): a Prepared read, no IN list
            (key,) = keys
            return {row[0] for row in session_rows(self.uow.session, _STORED_NAME_KEY, {"key": key})}
        ordered = sorted(keys)
        stored: set[str] = set()
        for chunk in in_chunks(ordered):
            stored.update(self.uow.session.scalars(_STORED_NAME_KEYS, {"keys": chunk}))
        return stored

    def _flush_unique(self, users: Sequence[User]) -> None:
        """Flush inside a savepoint, turning a lost race on the unique userName of
        ``users`` into the same clear error, with the transaction still usable."""
        session = self.uow.session
        try:
            with session.begin_nested():  # flushes what was pending before, then SAVEPOINT
                session.flush()
        except IntegrityError as exc:
            if _lost_user_name(exc):
                raise UserNameTaken(f"userName {self._lost_names([u.user_name for u in users])} is already "
                                    "taken", field="user_name") from None
            raise

    def _insert_one(self, row: dict[str, Any]) -> None:
        """``_insert_unique`` for one row. On SQLite without a savepoint: a write transaction
        holds the database's write lock from its start (bridge.store.db), so the name looked
        up before is still free, and a failed statement undoes only itself, the transaction
        going on as it would after a savepoint's rollback. What was pending is flushed first,
        as a savepoint would, so that rows reach the database in the order they were written."""
        session = self.uow.session
        if not self.uow.sqlite:
            self._insert_unique([row])
            return
        session.flush()
        try:
            _INSERT_USERS(session, [row])
        except IntegrityError as exc:
            if _lost_user_name(exc):
                raise UserNameTaken(f"userName {row['user_name']!r} is already taken", field="user_name") from None
            raise

    def _insert_unique(self, rows: Sequence[dict[str, Any]]) -> None:
        """``_flush_unique`` for plain rows: one executemany INSERT inside a savepoint."""
        session = self.uow.session
        try:
            with session.begin_nested():  # flushes what was pending before, then SAVEPOINT
                _INSERT_USERS(session, rows)
        except IntegrityError as exc:
            if _lost_user_name(exc):
                raise UserNameTaken(f"userName {self._lost_names([r['user_name'] for r in rows])} is already "
                                    "taken", field="user_name") from None
            raise

    def _lost_names(self, names: Sequence[str]) -> str:
        """Which of ``names`` a concurrent writer took (for the error message)."""
        if len(names) == 1:
            return repr(names[0])
        by_key = {user_name_key(name): name for name in names}
        lost = sorted(self._keys_in_store(set(by_key)))
        return ", ".join(repr(by_key[k]) for k in lost) or "of one of the batch's users"

    def _normalise(self, fields: dict[str, Any], source: str) -> dict[str, Any]:
        out = dict(fields)
        if "kind" in out and not isinstance(out["kind"], UserKind):
            try:
                out["kind"] = UserKind(out["kind"])
            except ValueError:
                raise InvalidValue(f"kind must be one of {[k.value for k in UserKind]}", field="kind") from None
        if "access_type" in out and not isinstance(out["access_type"], AccessType):
            try:
                out["access_type"] = AccessType(out["access_type"])
            except ValueError:
                raise InvalidValue(f"access type must be one of {[a.value for a in AccessType]}",
                                   field="access_type") from None
        if out.get("customer_id") is not None:  # a customer is named by number or id (a number wins)
            named = self.uow.customers.by_ref(str(out["customer_id"]))
            if named is None:
                raise InvalidValue(f"no customer {out['customer_id']!r} (by number or id)", field="customer_id")
            out["customer_id"] = named.id
        if "email" in out and out["email"] is not None:
            email = str(out["email"]).strip()
            address = mail_address(email)
            if email and address is None and source == LOCAL_SOURCE:  # invitations and resets go there
                raise InvalidValue(f"{email!r} is not an e-mail address", field="email")
            # An IdP's value that is no address stays in its SCIM attributes only: the
            # column is what invitations, resets and expiry warnings are sent to.
            out["email"] = address
        if "active" in out:
            out["active"] = bool(out["active"])
        if "ip_allowlist" in out:
            out["ip_allowlist"] = validate.ip_allowlist(out["ip_allowlist"])
        for key, check in (("timezone", validate.timezone), ("preferred_language", validate.language)):
            if key in out and source == LOCAL_SOURCE:
                # the operator's own users: what the portal shows and mails in. An IdP's or a
                # directory's value is its data about its user, kept as sent (SCIM clients
                # send what their directory holds; refusing it would fail the whole user).
                out[key] = check(out[key])
        validate.fits_columns(User.__table__, out)
        return out

    def _takes_over(self, user: User) -> bool:
        return user.source != self.uow.actor.source and self.uow.may_take_over(user.source)

    def _change_owner(self, user: User) -> None:
        """The actor's source takes ``user`` over (an ownership rule lets it). Credentials
        belong to the owner: the password, TOTP, open invitations, reset and e-mail links and
        operator sessions
        set under the old one end here, so whoever held the name before (an IdP that squatted a directory
        user's name, say) keeps no way in; the user signs in the new owner's way (a
        directory bind, a password the IdP sets, an invitation)."""
        previous = user.source
        user.source = self.uow.actor.source
        if user.password_hash is not None:
            user.password_hash, user.password_changed_at, user.must_change_password = None, None, False
        self.uow.accounts.reset_totp(user)
        now = self.uow.now()
        for invitation in self.uow.accounts.open_invitations(user, now):  # a link the old owner asked for
            self.uow.accounts.revoke_invitation(invitation, now=now)
        for purpose in (RESET_LINK, EMAIL_LINK):  # and the links the user asked for under it
            self.uow.accounts.revoke_links(user, purpose, now=now)
        user.sessions_valid_after = now
        audit.record(self.uow.session, self.uow.actor, "user.take-over", "user", user.id, user.user_name,
                     {"source": [previous, user.source]})

    def check_owner(self, user: User, what: str) -> None:
        """Only the user's source (or one its ownership rule lets take over) may change
        ``what`` (a credential, say), whoever else may change the portal's fields."""
        if user.source == self.uow.actor.source or self.uow.may_take_over(user.source):
            return
        raise SourceConflict(f"user {user.user_name!r} belongs to source {user.source!r}; "
                             f"{self.uow.actor.source!r} may not change its {what}")

    def _check_ownership(self, user: User, changed: dict[str, Any]) -> None:
        """Identity fields belong to the user's source; the local operator may still
        make the portal's own decisions (access type, customer...) for anyone."""
        actor_source = self.uow.actor.source
        if user.source == actor_source or self.uow.may_take_over(user.source):
            return
        identity_changes = [k for k in changed if k in IDENTITY_FIELDS]
        if actor_source == LOCAL_SOURCE and not identity_changes:
            return
        raise SourceConflict(
            f"user {user.user_name!r} belongs to source {user.source!r}; {actor_source!r} may not change "
            f"{', '.join(sorted(identity_changes or changed))} without an ownership rule"
        )

    def _check_may_grant_admin(self, user_id: str | None, user_name: str) -> None:
        """Privilege belongs to the config (UnitOfWork.may_grant_admin): a refusal is a 403
        and an audit event, whichever channel asked."""
        if self.uow.may_grant_admin():
            return
        source = self.uow.actor.source
        hint = (f"; the config allows it with [scim.clients.{source.removeprefix('scim:')}] admins = true"
                if source.startswith("scim:") else "")
        raise self.uow.refuse("access_type=admin", f"{source!r} may not make {user_name!r} an admin{hint}",
                              "user", user_id, user_name)

    def _keep_rule_access_type(self, user: User, changed: dict[str, Any]) -> None:
        """A mapping rule set the access type: the operator is told which (changing it here
        would last only until the next sync); a source's own value is kept for when no rule
        applies any more (an IdP re-sends what it holds on every PUT)."""
        if self.uow.actor.source == LOCAL_SOURCE:
            rule = rule_text(self.uow.config.mapping, user.access_type_rule or 0)
            raise Conflict(f"the access type of {user.user_name!r} is set by {rule}; change the user's groups "
                           "or the rule", field="access_type")
        own = changed.pop("access_type")
        if own != user.access_type_own:
            changed["access_type_own"] = own

    def guard_last_admin(self, user: User, changed: dict[str, Any]) -> None:
        was_admin = user.active and user.access_type == AccessType.admin
        stays_admin = (changed.get("active", user.active)
                       and changed.get("access_type", user.access_type) == AccessType.admin)
        if not was_admin or stays_admin:
            return
        admins = (
            select(User.id)
            .where(User.active.is_(True), User.access_type == AccessType.admin)
            .order_by(User.id)
        )
        if not self.uow.sqlite:
            # Lock every active admin row in one order: of two concurrent demotions the
            # second waits, then sees the first one's result (SQLite: BEGIN IMMEDIATE).
            admins = admins.with_for_update()
        if not [admin_id for admin_id in self.uow.session.scalars(admins) if admin_id != user.id]:
            raise LastAdmin(f"{user.user_name!r} is the last active admin; make another user admin first")
