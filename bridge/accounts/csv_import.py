"""CSV import of users: create or update, with roles and customer, all or nothing.

One unit of work for the whole file; each row runs in a savepoint, so that a bad
row reports its own error and the next rows are still checked. If any row
failed (or on a dry run) the unit is rolled back: nothing is half-applied.

Columns (header row; ``,`` ``;`` or tab separated, UTF-8 with or without BOM):
``user_name`` (required), ``email``, ``display_name``, ``given_name``,
``family_name``, ``preferred_language``, ``timezone``, ``kind``, ``access_type``,
``customer`` (number), ``customer_admin``, ``active``, ``ip_allowlist``
(addresses or networks separated by spaces), ``roles`` (``ROLE@SCOPE`` separated
by ``;`` or ``|``), ``password_hash`` (a hash exported from another system, see
bridge.accounts.imported: the user keeps the password). An empty cell leaves the field as
it is on an update. The
``roles`` column, when present, is the complete list of the user's roles that
came from imports: roles missing from it are taken away again (roles given any
other way stay).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.exc import SQLAlchemyError

from bridge.accounts.invitations import parse_role
from bridge.services import Actor, ServiceError, Services, UnitOfWork
from bridge.services.errors import InvalidValue, NotFound
from bridge.services.users import user_name_key
from bridge.store.models import User

ORIGIN = "import"
TEXT_COLUMNS = ("email", "display_name", "given_name", "family_name", "preferred_language", "timezone", "kind",
                "access_type")
BOOL_COLUMNS = ("customer_admin", "active")
COLUMNS = ("user_name", *TEXT_COLUMNS, "customer", *BOOL_COLUMNS, "ip_allowlist", "roles", "password_hash")
TRUE = {"true", "yes", "1", "ja", "y", "x"}
FALSE = {"false", "no", "0", "nein", "n"}
MAX_ROWS = 100_000

Action = Literal["create", "update", "unchanged", "error"]


@dataclass
class RowResult:
    line: int
    user_name: str
    action: Action
    error: str | None = None


@dataclass
class ImportReport:
    rows: list[RowResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # about the file as a whole
    dry_run: bool = False
    applied: bool = False

    @property
    def errors(self) -> list[RowResult]:
        return [r for r in self.rows if r.action == "error"]

    def count(self, action: Action) -> int:
        return sum(1 for r in self.rows if r.action == action)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.errors


class _Undo(Exception):
    """Rolls the unit of work back after a dry run or when a row failed."""


def _bool(value: str, column: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise InvalidValue(f"{column}: {value!r} is not true or false", field=column)


def _networks(value: str) -> list[str]:
    entries = [e for e in re.split(r"[\s,;]+", value.strip()) if e]
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise InvalidValue(f"ip_allowlist: {entry!r} is not an address or network", field="ip_allowlist") from None
    return entries


def _roles(value: str) -> list[tuple[str, str]]:
    return [parse_role(part) for part in re.split(r"[;|]", value) if part.strip()]


def _fields(uow: UnitOfWork, row: dict[str, str]) -> dict[str, Any]:
    """The user fields of a row; empty cells are left out."""
    fields: dict[str, Any] = {}
    for column in TEXT_COLUMNS:
        value = (row.get(column) or "").strip()
        if value:
            fields[column] = value
    for column in BOOL_COLUMNS:
        value = (row.get(column) or "").strip()
        if value:
            fields[column] = _bool(value, column)
    number = (row.get("customer") or "").strip()
    if number:
        customer = uow.customers.find(number)
        if customer is None:
            raise NotFound(f"customer: no customer with number {number!r}", field="customer")
        fields["customer_id"] = customer.id
        fields.setdefault("kind", "external")
    allowlist = (row.get("ip_allowlist") or "").strip()
    if allowlist:
        fields["ip_allowlist"] = _networks(allowlist)
    return fields


def _set_roles(uow: UnitOfWork, user: User, wanted: list[tuple[str, str]]) -> bool:
    """Make the user's import grants exactly ``wanted``; True if anything changed."""
    have = {(role, grant.scope_id): grant for grant, role in uow.grants.find(user_id=user.id)
            if grant.origin == ORIGIN}
    changed = False
    for role, scope in wanted:
        if (role, scope) not in have:
            uow.grants.grant(role, scope, user_id=user.id, origin=ORIGIN)
            changed = True
    for key, grant in have.items():
        if key not in set(wanted):
            uow.grants.revoke(grant)
            changed = True
    return changed


def _apply_row(uow: UnitOfWork, row: dict[str, str], has_roles: bool) -> tuple[str, Action]:
    user_name = (row.get("user_name") or "").strip()
    if not user_name:
        raise InvalidValue("user_name: empty", field="user_name")
    fields = _fields(uow, row)
    roles = _roles(row.get("roles") or "") if has_roles else None
    user = uow.users.find_by_user_name(user_name)
    if user is None:
        user = uow.users.create(user_name=user_name, **fields)
        action: Action = "create"
    else:
        before = user.version
        uow.users.update(user, **fields)
        action = "update" if user.version != before else "unchanged"
    if roles is not None and _set_roles(uow, user, roles) and action == "unchanged":
        action = "update"
    password_hash = (row.get("password_hash") or "").strip()
    if password_hash and password_hash != user.password_hash:
        from bridge.accounts.credentials import import_password_hash

        import_password_hash(uow, user, password_hash)
        action = "update" if action == "unchanged" else action
    return user.user_name, action


def read_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of a CSV text (delimiter sniffed among , ; and tab)."""
    text = text.lstrip("\ufeff")
    first = text.splitlines()[0] if text.strip() else ""
    try:
        dialect: Any = csv.Sniffer().sniff(first, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    return header, list(reader)


def import_users(services: Services, actor: Actor, text: str, *, dry_run: bool = False) -> ImportReport:
    """Apply a CSV file of users; see the module's docstring for the columns."""
    report = ImportReport(dry_run=dry_run)
    if "\x00" in text:  # no store keeps it in text; refused for the whole file, as the API refuses a body
        line = text.count("\n", 0, text.index("\x00")) + 1
        report.problems.append(f"line {line} holds a NUL character, which no field may hold")
        return report
    header, rows = read_rows(text)
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        report.problems.append(f"unknown columns: {', '.join(unknown)} (known: {', '.join(COLUMNS)})")
    if "user_name" not in header:
        report.problems.append("the header has no user_name column")
    if len(rows) > MAX_ROWS:
        report.problems.append(f"more than {MAX_ROWS} rows: split the file")
    if report.problems:
        return report
    seen: dict[str, int] = {}
    try:
        with services.unit(actor) as uow:
            for line, row in enumerate(rows, start=2):
                name = (row.get("user_name") or "").strip()
                if None in row:  # more cells than header columns
                    report.rows.append(RowResult(line, name, "error", "more cells than columns in the header"))
                    continue
                if user_name_key(name) in seen and name:
                    report.rows.append(RowResult(line, name, "error",
                                                 f"the user appears twice (also on line {seen[user_name_key(name)]})"))
                    continue
                seen[user_name_key(name)] = line
                try:
                    with uow.session.begin_nested():
                        shown, action = _apply_row(uow, row, "roles" in header)
                    report.rows.append(RowResult(line, shown, action))
                except ServiceError as exc:
                    report.rows.append(RowResult(line, name, "error", exc.message))
                except SQLAlchemyError as exc:
                    report.rows.append(RowResult(line, name, "error", f"database refused the row: "
                                                                      f"{type(exc).__name__}"))
            if dry_run or report.errors:
                raise _Undo()
    except _Undo:
        return report
    report.applied = True
    return report
