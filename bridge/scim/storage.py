"""scim2-server's storage port, backed by the store through the service layer.

Every write goes through ``UnitOfWork`` (so SCIM obeys the same invariants,
ownership rules and audit as every other source); every search is one SQL
query (bridge.scim.filters). A request runs in one transaction that the SCIM
application opens (``begin``); each operation in it, a Bulk operation
included, runs in a savepoint, so a failed operation leaves no trace while the
others are kept, as RFC 7644 §3.7 wants.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from scim2_models import (
    ConflictException,
    ForbiddenException,
    InvalidValueException,
    NotFoundException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    SearchRequest,
    UniquenessException,
)
from scim2_server.storage import ScimStorage, SearchPage
from sqlalchemy import ColumnElement, Connection, Integer, Select, String, and_, bindparam, func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from bridge.accounts.context import AccountsContext
from bridge.accounts.credentials import set_password_from_source
from bridge.gate import slot_released
from bridge.names import identity_key
from bridge.scim import convert, keyset
from bridge.scim.filters import SqlDialect, order_by, scim_key, where_clause
from bridge.scim.writeback import Writeback
from bridge.services import Actor, Services
from bridge.services.customers import PENDING_NUMBER
from bridge.services.errors import (
    Forbidden,
    GroupNameTaken,
    InvalidValue,
    NotFound,
    ServiceError,
    UserNameTaken,
    VersionMismatch,
)
from bridge.services.unit import UnitOfWork
from bridge.services.visibility import Visibility
from bridge.store.among import in_chunks
from bridge.store.models import Group, User
from bridge.store.prepared import Prepared

AfterCommit = Callable[[], None]
IgnoredPassword = Callable[[str], None]  # (client): a password the client may not set was left out


@dataclass
class _Context:
    given_session: Session | None  # a write's (its unit of work's) or a Bulk's; None for a read
    uow: UnitOfWork | None  # None for a read-only request
    visibility: Visibility  # what the client may see (bridge.services.visibility)
    # Work that must wait until the request's transaction committed (LDAP write-back);
    # one list per open operation, so a rolled-back operation's work is dropped with it.
    after_commit: list[list[AfterCommit]] = field(default_factory=lambda: [[]])
    # group id -> the member ids a write request read (a PATCH's starting point): a member
    # deleted by another client since then is dropped from the result, not an error.
    members_read: dict[str, set[str]] = field(default_factory=dict)
    # a Bulk request: each operation is a unit of work (a transaction) of its own, for this actor
    per_operation: Actor | None = None
    # the rows a write request read (and locked), held here: the session's identity map holds
    # its objects weakly, and the write that follows (a PATCH's) finds them there, not by a SELECT
    held: list[User | Group] = field(default_factory=list)
    # a read-only request's transaction: what the hot path reads through (bridge.store.prepared);
    # a session on it is made only when something reads ORM objects
    connection: Connection | None = None

    @property
    def session(self) -> Session:
        if self.given_session is None:
            assert self.connection is not None
            self.given_session = Session(bind=self.connection, expire_on_commit=False)
        return self.given_session

    def defer(self, action: AfterCommit) -> None:
        self.after_commit[-1].append(action)


@dataclass
class DocumentPage:
    """A page of found resources as SCIM documents (convert.user_document, group_document):
    what scim2-server's SearchPage holds as resources."""

    total: int | None
    documents: list[dict[str, Any]]
    next: Any = None
    previous: Any = None


# A user by id, as get_document reads it outside a write: its document's columns and its source.
_USER_BY_ID = select(*convert.USER_DOCUMENT_COLUMNS, User.source).where(User.id == bindparam("id", type_=String))

_current: contextvars.ContextVar[_Context | None] = contextvars.ContextVar("scim_request", default=None)


def scim_error(exc: ServiceError) -> Exception:
    """The SCIM exception (status and scimType, RFC 7644 §3.12) for a service error."""
    if isinstance(exc, (UserNameTaken, GroupNameTaken)):
        return UniquenessException(detail=exc.message)
    if isinstance(exc, Forbidden):
        return ForbiddenException(detail=exc.message)
    if isinstance(exc, NotFound):
        return NotFoundException(detail=exc.message)
    if isinstance(exc, VersionMismatch):
        return PreconditionFailedException(detail=exc.message)
    if isinstance(exc, InvalidValue):
        return InvalidValueException(detail=exc.message)
    if exc.status == 409:
        return ConflictException(detail=exc.message)
    return InvalidValueException(detail=exc.message)


class StoreStorage(ScimStorage):
    supports_cursors = True  # keyset paging in SQL (bridge.scim.keyset)

    def __init__(self, services: Services, default_actor: Actor | None = None, writeback: Writeback | None = None,
                 accounts: Callable[[], AccountsContext] | None = None, ignored: IgnoredPassword | None = None):
        self.services = services
        self.dialect = SqlDialect(services.store.engine.dialect.name)
        self.default_actor = default_actor or Actor.scim_client("scim")
        self.writeback = writeback
        self.accounts = accounts  # the password policy and clock, per request; without it passwords are left out
        self.ignored = ignored or (lambda client: None)
        # lookup_documents' statements by (attribute, the client's visible sources)
        self._lookups: dict[tuple[str, frozenset[str] | None], tuple[Prepared, Select[Any]]] = {}
        self._user_by_id = Prepared(_USER_BY_ID, services.store.engine.dialect, ["id"])
        # search_documents' plain pages of users (and their count) by the client's visible sources
        self._pages: dict[tuple[str, frozenset[str] | None], tuple[Prepared, Prepared]] = {}

    # -- transactions ----------------------------------------------------------------

    @contextmanager
    def begin(self, actor: Actor, *, write: bool, per_operation: bool = False) -> Iterator[None]:
        """One request: a write unit of work (or a read transaction), committed at the end. A
        Bulk request (``per_operation``) commits each operation on its own instead: the
        write lock is held for one operation at a time (a login waits for one password
        hash, not for a thousand), and RFC 7644 §3.7 asks for no more (Bulk is not atomic;
        a failed operation leaves no trace, the others stay)."""
        visibility = Visibility.of(actor.source, self.services.config.ownership)
        if per_operation:
            with self.services.store.read() as session:
                token = _current.set(_Context(session, None, visibility, per_operation=actor))
                try:
                    yield
                finally:
                    _current.reset(token)
            return
        if write:
            with self.services.unit(actor) as uow:
                context = _Context(uow.session, uow, visibility)
                token = _current.set(context)
                try:
                    yield
                finally:
                    _current.reset(token)
            if context.after_commit[0]:
                with slot_released():  # a write-back waits on a directory
                    for action in context.after_commit[0]:
                        action()
        else:
            with self.services.store.reading() as connection:
                context = _Context(None, None, visibility, connection=connection)
                token = _current.set(context)
                try:
                    yield
                finally:
                    _current.reset(token)
                    if context.given_session is not None:
                        context.given_session.close()

    @contextmanager
    def _context(self, write: bool) -> Iterator[_Context]:
        current = _current.get()
        if current is not None and (current.uow is not None or not write):
            yield current
            return
        # Called outside a request (the contract suite, a job): one transaction per call.
        with self.begin(self.default_actor, write=write):
            context = _current.get()
            assert context is not None
            yield context

    @contextmanager
    def operation(self) -> Iterator[None]:
        current = _current.get()
        if current is not None and current.per_operation is not None:
            with self.begin(current.per_operation, write=True):  # its own transaction, committed here
                operation = _current.get()
                assert operation is not None
                operation.members_read = current.members_read
                yield
            return
        if current is None or current.uow is None:
            yield
            return
        current.after_commit.append([])
        try:
            with current.session.begin_nested():
                yield
        except BaseException:
            current.after_commit.pop()
            raise
        done = current.after_commit.pop()
        current.after_commit[-1].extend(done)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except ServiceError as exc:
            raise scim_error(exc) from None
        except StaleDataError:
            raise PreconditionFailedException(detail="the resource changed meanwhile; read it again") from None

    # -- reads -----------------------------------------------------------------------

    def _is_user(self, resource_type: ResourceType) -> bool:
        return resource_type.name == "User"

    def _model(self, resource_type: ResourceType) -> type[Resource[Any]]:
        from scim2_models import Group as ScimGroup

        from bridge.scim.schema import ScimUser

        return ScimUser if self._is_user(resource_type) else ScimGroup

    def _render(self, session: Session, resource_type: ResourceType, row: User | Group,
                response_parameters: ResponseParameters[Any] | None = None) -> Resource[Any]:
        return convert.to_resource(self._model(resource_type),
                                   self._document(session, row, _excluded(response_parameters)))

    def _document(self, session: Session, row: User | Group, skip: frozenset[str] | set[str] = frozenset()
                  ) -> dict[str, Any]:
        """The SCIM document of a row as the client may see it (convert.user_document), without
        the whole ``groups`` or ``members`` attribute when ``skip`` names it."""
        visibility = _visibility()
        if isinstance(row, User):
            return convert.user_document(session, row, with_groups="groups" not in skip, visibility=visibility)
        return convert.group_document(session, row, with_members="members" not in skip, visibility=visibility)

    def _row(self, session: Session, resource_type: ResourceType, resource_id: str | None, *,
             lock: bool = False) -> User | Group:
        """The row; ``lock`` (in a write request) takes its row lock first, so that a read-modify-write
        (PATCH, PUT, DELETE) waits for a concurrent writer of it instead of failing its version check
        with a 412 the client never asked for (PostgreSQL; SQLite write transactions are serial)."""
        table: type[User] | type[Group] = User if self._is_user(resource_type) else Group
        row: User | Group | None
        if resource_id and lock:
            row = cast("User | Group | None", session.get(table, resource_id, with_for_update=True,
                                                               populate_existing=True))
        else:
            row = cast("User | Group | None", session.get(table, resource_id)) if resource_id else None
        if row is None or not _sees(session, row):
            # An invisible resource is as absent as one that does not exist.
            raise NotFoundException(detail=f"{resource_type.name} {resource_id!r} not found")
        return row

    def get(self, resource_type: ResourceType, resource_id: str, *,
            response_parameters: ResponseParameters[Any] | None = None) -> Resource[Any]:
        return convert.to_resource(self._model(resource_type), self.get_document(
            resource_type, resource_id, skip=_excluded(response_parameters)))

    def get_document(self, resource_type: ResourceType, resource_id: str, *,
                     skip: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
        """What ``get`` returns, as the document (bridge.scim.fast serializes it without a model).
        A user read outside a write is read as its columns (USER_DOCUMENT_COLUMNS), no ORM object."""
        with self._context(write=False) as ctx:
            if ctx.uow is None and self._is_user(resource_type):
                reader = _connection(ctx)  # a read: no ORM object, nothing to flush
                rows = self._user_by_id.rows(reader, {"id": resource_id}) if resource_id else []
                found = rows[0] if rows else None
                if found is None or not ctx.visibility.sees_source(found.source):
                    raise NotFoundException(detail=f"{resource_type.name} {resource_id!r} not found")
                data = convert.PageData.load(reader, [found], with_groups="groups" not in skip,
                                             visibility=ctx.visibility)
                return convert.user_document(reader, found, with_groups="groups" not in skip, page=data)
            row = self._row(ctx.session, resource_type, resource_id, lock=ctx.uow is not None)
            if ctx.uow is not None:
                ctx.held.append(row)
            if ctx.uow is not None and isinstance(row, Group):
                ctx.members_read[row.id] = ctx.uow.groups.user_member_ids(row) | ctx.uow.groups.group_member_ids(row)
            return self._document(ctx.session, row, skip)

    def search(self, resource_types: list[ResourceType], search_request: SearchRequest[Any], *,
               position: Any = None) -> SearchPage:
        """search_documents, each document as a resource of its type's model."""
        found = self.search_documents(resource_types, search_request, position=position)
        models = {str(rt.name): self._model(rt) for rt in resource_types}
        return SearchPage(found.total, [convert.to_resource(models[doc["meta"]["resourceType"]], doc)
                                        for doc in found.documents], found.next, found.previous)

    def search_documents(self, resource_types: list[ResourceType], search_request: SearchRequest[Any], *,
                         position: Any = None, skip: frozenset[str] | set[str] = frozenset()) -> DocumentPage:
        """One type paged by index: one query for the page's rows, and one for the count unless
        the page tells it (a page shorter than asked for, from the first position or holding
        rows, ends the collection). Several types (a search at the root) or a cursor: see
        _search_keyed. ``skip`` as in _document."""
        if len(resource_types) != 1 or search_request.cursor is not None:
            return self._search_keyed(resource_types, search_request, position, skip)
        (resource_type,) = resource_types
        model = self._model(resource_type)
        table: type[User] | type[Group] = User if self._is_user(resource_type) else Group
        where: list[Any] = [_visible(table)]
        if search_request.filter is not None:
            where.append(where_clause(self.dialect, model, search_request.filter.ast))
        query: Select[Any] = select(table).where(*where)
        with self._context(write=False) as ctx:
            count, offset = search_request.count, search_request.start_index_0 or 0
            if count == 0:
                return DocumentPage(self._count(ctx.session, query), [])
            ordering = order_by(self.dialect, model, search_request)
            if table is User:
                reader = _reader(ctx)
                if (search_request.filter is None and search_request.sort_by is None and count is not None
                        and isinstance(reader, Connection)):
                    # a plain page of a read (GET /Users?startIndex=&count=): prepared per client
                    page_rows, counted_rows = self._page_statements(ctx.visibility)
                    users = page_rows.rows(reader, {"offset": offset, "count": count})
                    told = _told_total(offset, count, len(users))
                    total = told if told is not None else counted_rows.rows(reader, {})[0][0]
                else:
                    users = self._user_page(reader, where, ordering, offset, count)
                    # counted without a subquery (the WHERE reads no other table than through its own
                    # subqueries, so the rows counted are those the page is cut from)
                    total = self._total(reader, select(func.count()).select_from(User).where(*where),
                                        offset, count, len(users))
                page = convert.PageData.load(reader, users, with_groups="groups" not in skip,
                                             visibility=ctx.visibility)
                return DocumentPage(total, [convert.user_document(reader, row, page=page,
                                                                  with_groups="groups" not in skip)
                                            for row in users])
            page_query = query.order_by(*ordering).offset(offset)
            if count is not None:
                page_query = page_query.limit(count)
            rows: list[User | Group] = list(ctx.session.scalars(page_query).all())
            total = self._total(ctx.session, self._counted(query), offset, count, len(rows))
            return DocumentPage(total, [self._document(ctx.session, row, skip) for row in rows])

    @staticmethod
    def _total(reader: Session | Connection, counted: Select[Any], offset: int, count: int | None,
               found: int) -> int:
        """The collection's size: told by the page (``_told_total``), else ``counted`` (a count
        statement) is run."""
        told = _told_total(offset, count, found)
        return told if told is not None else reader.scalar(counted) or 0

    def _user_page(self, session: Session | Connection, where: list[Any], ordering: list[Any], offset: int,
                   count: int | None) -> list[convert.UserColumns]:
        """The rows (USER_DOCUMENT_COLUMNS) of a page of users, in order, in one statement that
        orders and cuts the ids alone and then reads the page's rows: ordering whole rows, SQLite
        sorts every visible user's row, its JSON included, whatever the page's size."""
        keys = select(User.id).where(*where).order_by(*ordering).offset(offset)
        if count is not None:
            keys = keys.limit(count)
        page = select(*convert.USER_DOCUMENT_COLUMNS).where(User.id.in_(keys.correlate(None))).order_by(*ordering)
        return convert.document_rows(session.execute(page))

    @staticmethod
    def _user_rows(session: Session | Connection, ids: list[str]) -> list[convert.UserColumns]:
        """The rows (USER_DOCUMENT_COLUMNS) of these users, in the order of ``ids``; an id
        another transaction deleted meanwhile has none."""
        rows: dict[str, convert.UserColumns] = {}
        for chunk in in_chunks(ids):
            rows.update((row.id, row) for row in convert.document_rows(session.execute(
                select(*convert.USER_DOCUMENT_COLUMNS).where(User.id.in_(chunk)))))
        return [rows[uid] for uid in ids if uid in rows]

    def lookup_documents(self, attribute: str, value: str, count: int, *,
                         skip: frozenset[str] | set[str] = frozenset()) -> DocumentPage:
        """The first page (``count`` users) of ``userName eq value`` or ``externalId eq value``
        (``attribute``), as search_documents answers the parsed filter with the same WHERE
        clause (bridge.scim.filters: the indexed identity key and the NFC-lowercase comparison
        for userName, the exact value for externalId; the client's visibility), from
        statements built once per client instead of per request."""
        with self._context(write=False) as ctx:
            page, counted = self._lookup_statements(attribute, ctx.visibility)
            if attribute == "userName":
                params: dict[str, Any] = {"key": identity_key(value), "value": scim_key(value)}
            else:
                params = {"value": value}
            reader = _connection(ctx)
            users: list[convert.UserColumns] = page.rows(reader, {**params, "count": count})
            total = len(users) if len(users) < count else (reader.scalar(counted, params) or 0)
            data = convert.PageData.load(reader, users, with_groups="groups" not in skip,
                                         visibility=ctx.visibility)
            return DocumentPage(total, [convert.user_document(reader, row, page=data,
                                                              with_groups="groups" not in skip)
                                        for row in users])

    def _lookup_statements(self, attribute: str, visibility: Visibility) -> tuple[Prepared, Select[Any]]:
        """(the page, the count) of a lookup, built once per attribute and client visibility."""
        key = (attribute, visibility.sources)
        found = self._lookups.get(key)
        if found is None:
            where = lookup_where(self.dialect, attribute, visibility)
            page = (select(*convert.USER_DOCUMENT_COLUMNS).where(*where).order_by(User.id)
                    .limit(bindparam("count", type_=Integer)))
            parameters = ["key", "value", "count"] if attribute == "userName" else ["value", "count"]
            found = (Prepared(page, self.services.store.engine.dialect, parameters),
                     self._counted(select(User).where(*where)))
            self._lookups[key] = found
        return found

    def _page_statements(self, visibility: Visibility) -> tuple[Prepared, Prepared]:
        """(a page, the count) of the users a client sees, in id order (no filter, no sort):
        what ``_user_page`` and ``_total`` run for such a page, built once per client visibility."""
        key = ("page", visibility.sources)
        found = self._pages.get(key)
        if found is None:
            dialect = self.services.store.engine.dialect
            keys = (select(User.id).where(visibility.users()).order_by(User.id)
                    .offset(bindparam("offset", type_=Integer)).limit(bindparam("count", type_=Integer)))
            page = select(*convert.USER_DOCUMENT_COLUMNS).where(User.id.in_(keys.correlate(None))).order_by(User.id)
            counted = select(func.count()).select_from(User).where(visibility.users())
            found = self._pages[key] = (Prepared(page, dialect, ["offset", "count"]), Prepared(counted, dialect, []))
        return found

    @staticmethod
    def _counted(query: Select[Any]) -> Select[Any]:
        """The statement that counts ``query``'s rows."""
        return select(func.count()).select_from(query.subquery())

    def _count(self, session: Session, query: Select[Any]) -> int:
        return session.scalar(self._counted(query)) or 0

    def _search_keyed(self, resource_types: list[ResourceType], search_request: SearchRequest[Any],
                      position: Any, skip: frozenset[str] | set[str] = frozenset()) -> DocumentPage:
        """The resources of every type as one collection (bridge.scim.keyset), paged by index or
        by cursor: one query for the count (and, for a cursor, whether resources lie behind the
        page), one for the keys of the page, then the rows of the page are loaded and rendered."""
        types = {str(rt.name): rt for rt in resource_types}
        collection = keyset.Collection(self.dialect, [
            keyset.Searched(name, self._model(rt), table, _visible(table))
            for name, rt in types.items() for table in [User if self._is_user(rt) else Group]], search_request)
        by_cursor = search_request.cursor is not None
        anchor = collection.read(position) if by_cursor and position is not None else None
        count = search_request.count
        with self._context(write=False) as ctx:
            counts = ctx.session.execute(collection.count_query(anchor)).one()
            total = counts[0]
            if count == 0 or total == 0:
                return DocumentPage(total, [])
            if not by_cursor:
                first = list(ctx.session.execute(collection.page_query(
                    None, offset=search_request.start_index_0 or 0, limit=count)).all())
                return DocumentPage(total, self._render_keys(ctx, types, first, skip))
            # One key more than the page tells whether another page follows in this direction.
            keys = list(ctx.session.execute(collection.page_query(
                anchor, limit=None if count is None else count + 1)).all())
            further = count is not None and len(keys) > count
            keys = keys[:count]
            behind = anchor is not None and counts[1] > 0
            forward = anchor is None or anchor.forward
            if not forward:
                keys.reverse()
            page = DocumentPage(total, self._render_keys(ctx, types, keys, skip))
            if keys and (further if forward else behind):
                page.next = collection.position(keyset.NEXT, keys[-1])
            if keys and (behind if forward else further):
                page.previous = collection.position(keyset.PREVIOUS, keys[0])
            return page

    def _render_keys(self, ctx: _Context, types: dict[str, ResourceType], keys: list[Any],
                     skip: frozenset[str] | set[str] = frozenset()) -> list[dict[str, Any]]:
        """The documents of a page's keys, in order; users as one page (convert.PageData)."""
        session, reader = ctx.session, _reader(ctx)
        wanted: dict[str, list[str]] = {}
        for key in keys:
            wanted.setdefault(key.type, []).append(key.id)
        rows: dict[tuple[str, str], convert.UserColumns | Group] = {}
        users: list[convert.UserColumns] = []
        for name, ids in wanted.items():
            if self._is_user(types[name]):
                users = self._user_rows(reader, ids)
                rows.update(((name, row.id), row) for row in users)
            else:
                for chunk in in_chunks(ids):
                    rows.update(((name, row.id), row) for row in session.scalars(
                        select(Group).where(Group.id.in_(chunk))))
        page = convert.PageData.load(reader, users, with_groups="groups" not in skip,
                                     visibility=ctx.visibility) if users else None
        documents = []
        for key in keys:
            row = rows.get((key.type, key.id))
            if row is None:  # deleted by another transaction between the two statements
                continue
            if isinstance(row, Group):
                documents.append(self._document(session, row, skip))
            else:
                documents.append(convert.user_document(session, row, page=page, with_groups="groups" not in skip))
        return documents

    # -- writes ----------------------------------------------------------------------

    def _user_changes(self, ctx: _Context, resource: Resource[Any]) -> tuple[dict[str, Any], str | None]:
        """Service fields of a SCIM user; a customer number links the customer that has it,
        or waits for it (bridge.services.customers)."""
        fields, customer_number, password = convert.user_fields(resource)
        assert ctx.uow is not None
        if customer_number:
            fields.update(ctx.uow.customers.link_fields(customer_number, fields["attributes"]))
        return fields, password

    def _password(self, uow: UnitOfWork, user: User, password: str) -> None:
        """A password sent with a user goes through the accounts' one path (owner, policy,
        history, hasher), if the config lets this client set passwords; else it is left out
        (Okta sends one on every create, whether it syncs passwords or not)."""
        if self.accounts is None or not set_password_from_source(self.accounts(), uow, user, password):
            self.ignored(uow.actor.name)

    def _members(self, session: Session, users: set[str], groups: set[str],
                 vanished: set[str] = frozenset()) -> tuple[set[str], set[str]]:  # type: ignore[assignment]
        """The user and group members, typed by what the ids are in the store (a client
        often sends a bare value without a type). Ids in ``vanished`` (members when the request
        read the group) that no longer exist were deleted meanwhile and are dropped."""
        users, groups = set(users), set(groups)
        for member in sorted(users):
            # KEY SHARE: a concurrent delete of the member waits for this request (PostgreSQL).
            if not _seen(session, session.get(User, member, with_for_update={"key_share": True})):
                users.discard(member)
                if not _seen(session, session.get(Group, member)):
                    if member in vanished:
                        continue
                    raise InvalidValueException(detail=f"member {member!r} is neither a user nor a group")
                groups.add(member)
        for member in list(groups):
            if not _seen(session, session.get(Group, member)):
                if member in vanished:
                    groups.discard(member)
                    continue
                raise InvalidValueException(detail=f"member group {member!r} does not exist")
        return users, groups

    def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        return convert.to_resource(self._model(resource_type), self.create_document(resource_type, resource))

    def create_document(self, resource_type: ResourceType, resource: Resource[Any]) -> dict[str, Any]:
        """What ``create`` returns, as the document."""
        with self._context(write=True) as ctx, self._errors():
            uow = ctx.uow
            assert uow is not None
            if self._is_user(resource_type):
                fields, password = self._user_changes(ctx, resource)
                user = uow.users.create(**{k: v for k, v in fields.items() if v is not None})
                if password is not None:
                    self._password(uow, user, password)
                self._defer(ctx, "user", user)
                ctx.session.flush()
                # A user made in this transaction is in no group unless a write of it made the user
                # a member, and each membership write marks its user for the check caches
                # (bridge.services.changes): unmarked, its groups need not be looked up.
                fresh = user.id not in uow.changes.marked()[0]
                return self._document(ctx.session, user, {"groups"} if fresh else frozenset())
            fields, given_users, given_groups, displays = convert.group_fields(resource)
            users, groups = self._members(ctx.session, given_users, given_groups)
            group = uow.groups.create(fields.pop("display_name"), **fields)
            uow.groups.change_members(group, add_users=users, add_groups=groups, displays=displays)
            self._defer(ctx, "group", group)
            ctx.session.flush()
            return self._document(ctx.session, group)

    def update(self, resource_type: ResourceType, resource: Resource[Any], *,
               expected_version: str | None = None) -> Resource[Any]:
        return convert.to_resource(self._model(resource_type), self.update_document(
            resource_type, resource, expected_version=expected_version))

    def update_document(self, resource_type: ResourceType, resource: Resource[Any], *,
                        expected_version: str | None = None) -> dict[str, Any]:
        """What ``update`` returns, as the document."""
        with self._context(write=True) as ctx, self._errors():
            uow = ctx.uow
            assert uow is not None
            row = self._row(ctx.session, resource_type, resource.id)
            version = convert.parse_etag(expected_version)
            if version is not None and version != row.version:
                raise PreconditionFailedException(detail=f"{resource_type.name} is at {convert.etag(row.version)}")
            if isinstance(row, User):
                fields, password = self._user_changes(ctx, resource)
                pending = (row.attributes or {}).get(PENDING_NUMBER)
                if pending and "customer_id" not in fields:  # customerNumber left unassigned: it keeps waiting
                    fields["attributes"][PENDING_NUMBER] = pending
                previous = row.user_name
                uow.users.update(row, **fields)
                if password is not None:
                    self._password(uow, row, password)
                self._defer(ctx, "user", row, previous=previous if previous != row.user_name else None)
            else:
                fields, given_users, given_groups, displays = convert.group_fields(resource)
                users, groups = self._members(ctx.session, given_users, given_groups,
                                              ctx.members_read.get(row.id, set()))
                previous = row.display_name
                before_users, before_groups = uow.groups.user_member_ids(row), uow.groups.group_member_ids(row)
                uow.groups.update(row, **fields)
                uow.groups.set_members(row, users, groups, displays=displays)
                self._defer(ctx, "group", row, previous=previous if previous != row.display_name else None,
                            members=(users - before_users, before_users - users,
                                     groups - before_groups, before_groups - groups))
            ctx.session.flush()
            return self._document(ctx.session, row)

    def delete(self, resource_type: ResourceType, resource_id: str, *,
               expected_version: str | None = None) -> None:
        with self._context(write=True) as ctx, self._errors():
            uow = ctx.uow
            assert uow is not None
            row = self._row(ctx.session, resource_type, resource_id)
            version = convert.parse_etag(expected_version)
            if version is not None and version != row.version:
                raise PreconditionFailedException(detail=f"{resource_type.name} is at {convert.etag(row.version)}")
            if isinstance(row, User):
                uow.users.delete(row)
                self._defer(ctx, "user-removed", row)
            else:
                uow.groups.delete(row)
                self._defer(ctx, "group-removed", row)

    def _defer(self, ctx: _Context, what: str, row: User | Group, *, previous: str | None = None,
               members: tuple[set[str], set[str], set[str], set[str]] | None = None) -> None:
        """Queue the LDAP write-back of a change, to run once the request has committed."""
        if self.writeback is None:
            return
        writeback = self.writeback
        name = row.user_name if isinstance(row, User) else row.display_name
        ctx.defer(lambda: writeback.apply(what, row, name, previous, members))


def lookup_where(dialect: SqlDialect, attribute: str, visibility: Visibility) -> list[ColumnElement[bool]]:
    """The WHERE clause of StoreStorage.lookup_documents, with bound parameters ``key``
    (userName only) and ``value``: what search_documents builds for the parsed filter
    ``userName eq`` / ``externalId eq`` (bridge.scim.filters; a test compares them)."""
    if attribute == "userName":
        compared = and_(User.user_name.is_not(None), dialect.key(User.user_name) == bindparam("value", type_=String))
        return [visibility.users(), and_(User.user_name_key == bindparam("key", type_=String), compared)]
    if attribute == "externalId":
        return [visibility.users(), and_(User.external_id.is_not(None),
                                         dialect.exact(User.external_id) == bindparam("value", type_=String))]
    raise ValueError(f"no lookup by {attribute!r}")


def _reader(ctx: _Context) -> Session | Connection:
    """What a request's reads of rows go through: the session in a write (its pending changes
    are flushed first), else the read transaction's connection (no ORM work per statement)."""
    return ctx.session if ctx.uow is not None else _connection(ctx)


def _connection(ctx: _Context) -> Connection:
    """The connection of the request's transaction, for a Prepared read: in a write, after
    the session's pending changes are flushed (as a query of the session would)."""
    if ctx.uow is not None:
        ctx.session.flush()
        return ctx.session.connection()
    return ctx.connection if ctx.connection is not None else ctx.session.connection()


def _visibility() -> Visibility:
    context = _current.get()
    return context.visibility if context is not None else Visibility.everything()


def _told_total(offset: int, count: int | None, found: int) -> int | None:
    """The collection's size as a page tells it: shorter than asked for, from the first
    position or holding rows, it ends the collection; else None (count it)."""
    if (count is None or found < count) and (found or not offset):
        return offset + found
    return None


def _visible(table: type[User] | type[Group]) -> ColumnElement[bool]:
    """The WHERE clause of the rows the request's client may see."""
    return _visibility().users() if table is User else _visibility().groups()


def _sees(session: Session, row: User | Group) -> bool:
    visibility = _visibility()
    if visibility.sources is None or visibility.sees_source(row.source):
        return True
    return isinstance(row, Group) and session.scalar(
        select(Group.id).where(Group.id == row.id, visibility.groups())) is not None


def _seen(session: Session, row: User | Group | None) -> bool:
    return row is not None and _sees(session, row)


def _excluded(response_parameters: ResponseParameters[Any] | None) -> set[str]:
    """Top-level attributes the response leaves out, so they need not be loaded."""
    if response_parameters is None:
        return set()
    # Only a whole attribute left out ("members", not "members.display") spares the load.
    excluded = {name for name in (str(p).split(":")[-1] for p in (response_parameters.excluded_attributes or []))
                if "." not in name}
    if response_parameters.attributes:
        kept = {str(p).split(".")[0].split(":")[-1] for p in response_parameters.attributes}
        excluded |= {name for name in ("groups", "members") if name not in kept}
    return excluded
