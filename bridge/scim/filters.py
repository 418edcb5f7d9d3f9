"""SCIM filters and sorting compiled to SQL, for SQLite and PostgreSQL.

The semantics are those of scim2-models' reference evaluator
(``ScimFilter.match``), which scim2-server's storage contract checks us
against: strings compare as NFC-lowercase unless the attribute is caseExact; a
comparison with null only holds for eq/ne; a multi-valued attribute matches
when any value matches, except ``ne``, which holds when no value equals the
operand; ``pr`` wants a non-empty value. Nothing is evaluated in Python: a
search is one query however many users the store holds.

Where a value lives: the portal's attributes are columns; the rest of a user's
SCIM document is JSON in ``User.attributes`` (see bridge.scim.convert);
``groups`` and ``members`` come from the membership tables.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scim2_models import EnterpriseUser, InvalidFilterException, Resource, SearchRequest
from scim2_models import User as ScimUser
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    FilterVisitor,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from scim2_models.path.resolution import AttributeBinding
from sqlalchemy import (
    SQLColumnExpression,
    and_,
    case,
    false,
    func,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    true,
    union_all,
)

from bridge.names import identity_key
from bridge.scim.convert import ENTERPRISE_ATTRIBUTES, UNASSIGNED, USER_JSON_ATTRIBUTES
from bridge.scim.schema import PortalUser
from bridge.services.customers import PENDING_NUMBER
from bridge.services.memberships import user_groups_rows, users_in_group
from bridge.services.validate import unstorable
from bridge.store.models import Customer, Group, GroupGroupMember, GroupUserMember, User

Expr = SQLColumnExpression[Any]  # a column, an ORM attribute or any SQL expression


def scim_key(value: str) -> str:
    """The form strings are compared in when the attribute is not caseExact."""
    return unicodedata.normalize("NFC", value).lower()


@dataclass
class Scalar:
    """One value per resource (or per element), as an SQL expression; NULL when absent."""

    expr: Expr
    kind: type  # str, bool, datetime, int


@dataclass
class Elements:
    """A multi-valued attribute: its elements, and whether the whole attribute is absent."""

    exists: Callable[[Callable[[ElementContext], Expr]], Expr]
    absent: Expr
    first: Callable[[str, type], Expr]  # the sort value: the primary element's, else the first's


class ElementContext:
    """Reads sub-attributes of one element of a multi-valued attribute."""

    def __init__(self, field: Callable[[str, type], Expr]):
        self.field = field


def alias_of(model: type | None, field_name: str) -> str:
    assert model is not None, f"{field_name!r} belongs to no model"
    info = model.model_fields[field_name]  # type: ignore[attr-defined]
    return str(info.serialization_alias or info.alias or field_name)


class SqlDialect:
    """The few things SQLite and PostgreSQL spell differently."""

    def __init__(self, name: str):
        self.pg = name == "postgresql"

    def key(self, expr: Expr) -> Expr:
        if self.pg:
            return func.lower(func.normalize(expr, literal_column("NFC"))).collate("C")
        return func.scim_key(expr)

    def exact(self, expr: Expr) -> Expr:
        return expr.collate("C") if self.pg else expr

    def json_text(self, path: tuple[str, ...]) -> Expr:
        text: Expr = User.attributes[path if len(path) > 1 else path[0]].as_string()
        return text

    def json_absent(self, name: str) -> Expr:
        if self.pg:
            return User.attributes.op("->")(name).is_(None)
        return func.json_extract(User.attributes, f'$."{name}"').is_(None)

    def json_elements(self, name: str) -> Elements:
        if self.pg:
            table = func.json_array_elements(User.attributes.op("->")(name)).table_valued(
                "value", with_ordinality="ord").render_derived()
            position = table.c.ord

            def field(sub: str, kind: type) -> Expr:
                text = table.c.value.op("->>")(sub)
                return (text == "true") if kind is bool else text
        else:
            table = func.json_each(User.attributes, f'$."{name}"').table_valued("value", "key").alias()
            position = table.c.key

            def field(sub: str, kind: type) -> Expr:
                if kind is bool:
                    return func.json_type(table.c.value, f'$."{sub}"') == "true"
                return func.json_extract(table.c.value, f'$."{sub}"')

        ctx = ElementContext(field)

        def exists(cond: Callable[[ElementContext], Expr]) -> Expr:
            return select(literal(1)).select_from(table).where(cond(ctx)).exists()

        def first(sub: str, kind: type) -> Expr:
            primary = field("primary", bool)
            return (select(field(sub, kind)).select_from(table)
                    .order_by(case((primary.is_(True), 0), else_=1), position).limit(1).scalar_subquery())

        return Elements(exists=exists, absent=self.json_absent(name), first=first)


def _relation(rows: Any, holder: Expr) -> Elements:
    """Elements from rows with value/display/type/ref columns and a ``holder`` column,
    correlated with the resource ``holder`` names (a user's groups, a group's members)."""
    sub = rows.subquery()

    def field_of(table: Any) -> Callable[[str, type], Expr]:
        def field(name: str, kind: type) -> Expr:
            column = {"value": "value", "display": "display", "type": "type", "$ref": "ref"}.get(name)
            found: Expr = getattr(table.c, column) if column else null()
            return found
        return field

    def holder_condition(table: Any) -> Expr:
        condition: Expr = table.c.holder == holder
        return condition

    def exists(cond: Callable[[ElementContext], Expr]) -> Expr:
        table = sub.alias()
        return select(literal(1)).select_from(table).where(
            holder_condition(table), cond(ElementContext(field_of(table)))).exists()

    def first(name: str, kind: type) -> Expr:
        table = sub.alias()
        return (select(field_of(table)(name, kind)).select_from(table).where(holder_condition(table))
                .order_by(table.c.value).limit(1).scalar_subquery())

    table = sub.alias()
    absent = ~select(literal(1)).select_from(table).where(holder_condition(table)).exists()
    return Elements(exists=exists, absent=absent, first=first)


def _user_groups() -> Elements:
    """A user's groups, direct and through nested groups (bridge.services.memberships)."""
    rows = user_groups_rows().subquery()
    return _relation(select(
        rows.c.user_id.label("holder"), rows.c.group_id.label("value"), rows.c.display_name.label("display"),
        rows.c.type.label("type"), (literal("Groups/") + rows.c.group_id).label("ref")), User.id)


def _group_members() -> Elements:
    users = select(
        GroupUserMember.group_id.label("holder"), GroupUserMember.user_id.label("value"),
        GroupUserMember.display.label("display"), literal("User").label("type"),
        (literal("Users/") + GroupUserMember.user_id).label("ref"),
    )  # every origin: a rights-group's members come from the customer rules
    groups = select(
        GroupGroupMember.group_id.label("holder"), GroupGroupMember.child_group_id.label("value"),
        GroupGroupMember.display.label("display"), literal("Group").label("type"),
        (literal("Groups/") + GroupGroupMember.child_group_id).label("ref"),
    )
    return _relation(union_all(users, groups), Group.id)


def _kind(binding: AttributeBinding) -> type:
    target = binding.target_type
    for kind in (bool, datetime, int, float):
        if isinstance(target, type) and issubclass(target, kind):
            return kind
    return str


class Resolver:
    """Where the attribute a binding names lives, for users or for groups."""

    def __init__(self, dialect: SqlDialect, resource: type[Resource[Any]]):
        self.dialect = dialect
        self.is_user = issubclass(resource, ScimUser)
        self.table = User if self.is_user else Group

    def value(self, binding: AttributeBinding) -> Scalar | Elements | None:
        model, head, sub = binding.model, binding.field_name, binding.sub_field_name
        kind = _kind(binding)
        if head == "id":
            return Scalar(self.table.id, str)
        if head == "meta":
            columns = {"created": self.table.created_at, "last_modified": self.table.updated_at}
            if sub in columns:
                return Scalar(columns[sub], datetime)
            if sub == "resource_type":
                return Scalar(literal("User" if self.is_user else "Group"), str)
            return Scalar(null(), kind)
        if head == "external_id":
            return Scalar(self.table.external_id, str)
        if not self.is_user:
            if head == "display_name":
                return Scalar(Group.display_name, str)
            if head == "members":
                return _group_members()
            return None
        return self._user_value(model, head, sub, kind, binding)

    def _assigned(self, name: str, expr: Expr) -> Expr:
        """NULL where the SCIM client left the attribute unassigned (see convert.UNASSIGNED)."""
        marker = self.dialect.json_text((UNASSIGNED, name))
        return case((marker.is_not(None), null()), else_=expr)

    def _user_value(self, model: type, head: str, sub: str | None, kind: type,
                    binding: AttributeBinding) -> Scalar | Elements | None:
        d = self.dialect
        if issubclass(model, PortalUser):
            if head == "kind":
                return Scalar(self._assigned("kind", User.kind), str)
            if head == "access_type":
                return Scalar(self._assigned("accessType", User.access_type), str)
            if head == "customer_number":
                linked = select(Customer.number).where(Customer.id == User.customer_id).scalar_subquery()
                number = func.coalesce(linked, d.json_text((PENDING_NUMBER,)))
                return Scalar(self._assigned("customerNumber", number), str)
            return None
        alias = alias_of(model, head)
        if issubclass(model, EnterpriseUser):
            if alias not in ENTERPRISE_ATTRIBUTES:
                return None
            if sub is not None:
                return Scalar(d.json_text((alias, alias_of(binding.field_type, sub))), kind)
            return Scalar(d.json_text((alias,)), kind)
        columns = {"user_name": User.user_name, "display_name": User.display_name,
                   "preferred_language": User.preferred_language, "timezone": User.timezone}
        if head in columns and sub is None:
            return Scalar(columns[head], kind)
        if head == "active" and sub is None:
            return Scalar(self._assigned("active", User.active), kind)
        if head == "name" and sub is not None:
            if sub in ("given_name", "family_name"):
                return Scalar(getattr(User, sub), str)
            return Scalar(d.json_text(("name", alias_of(binding.field_type, sub))), kind)
        if head == "groups":
            return _user_groups()
        if alias in USER_JSON_ATTRIBUTES:
            if binding.is_multivalued:
                return d.json_elements(alias)
            return Scalar(d.json_text((alias,)), kind)
        return None  # password and other attributes that are never stored


class SqlFilter(FilterVisitor[Expr]):
    """Compile a filter AST bound to ``model`` into a WHERE clause."""

    def __init__(self, dialect: SqlDialect, model: type[Resource[Any]], element: ElementContext | None = None,
                 element_binding: AttributeBinding | None = None):
        self.dialect = dialect
        self.model = model
        self.resolver = Resolver(dialect, model)
        self.element = element
        self.element_binding = element_binding

    # -- resolution ------------------------------------------------------------------

    def _bind(self, attr_path: AttrPath, *, for_comparison: bool) -> AttributeBinding | None:
        from scim2_models.path.resolution import _resolve_filter_path

        model = self.element_binding.field_type if self.element_binding is not None else self.model
        assert model is not None
        return _resolve_filter_path(model, attr_path, strict=False, for_comparison=for_comparison)

    def _value(self, binding: AttributeBinding) -> Scalar | Elements | None:
        if self.element is not None:
            # Inside a value path: the binding names a sub-attribute of the element.
            return Scalar(self.element.field(alias_of(binding.model, binding.field_name), _kind(binding)),
                          _kind(binding))
        return self.resolver.value(binding)

    # -- comparisons -----------------------------------------------------------------

    def _compare(self, expr: Expr, kind: type, op: CompareOperator, expected: Any, case_exact: bool) -> Expr:
        """One value against the operand, as scim2-models' _compare."""
        if expected is None:
            if op == CompareOperator.eq:
                return expr.is_(None)
            if op == CompareOperator.ne:
                return expr.is_not(None)
            return false()
        if kind is str:
            if not isinstance(expected, str):
                return expr.is_not(None) if op == CompareOperator.ne else false()
            left = self.dialect.exact(expr) if case_exact else self.dialect.key(expr)
            right = expected if case_exact else scim_key(expected)
            if op == CompareOperator.co:
                return left.contains(right, autoescape=True)
            if op == CompareOperator.sw:
                return left.startswith(right, autoescape=True)
            if op == CompareOperator.ew:
                return left.endswith(right, autoescape=True)
        elif op in (CompareOperator.co, CompareOperator.sw, CompareOperator.ew):
            return false()
        else:
            left, right = expr, expected
        if op == CompareOperator.eq:
            return and_(expr.is_not(None), left == right)
        if op == CompareOperator.ne:
            return or_(expr.is_(None), left != right)
        if kind is bool:
            return false()
        ordering = {CompareOperator.gt: left > right, CompareOperator.ge: left >= right,
                    CompareOperator.lt: left < right, CompareOperator.le: left <= right}
        return and_(expr.is_not(None), ordering[op])

    def visit_comparison(self, node: Comparison) -> Expr:
        from scim2_models.path.visitor import coerce_value  # type: ignore[attr-defined]

        if isinstance(node.value, str):
            if "\x00" in node.value:
                raise InvalidFilterException(detail="NUL characters are not allowed in filter values")
            unsendable = unstorable(node.value, surrogates=True)  # a lone surrogate ("\ud800"): no driver sends it
            if unsendable is not None:
                raise InvalidFilterException(detail=f"a filter value holds {unsendable[1]}")
        binding = self._bind(node.attr_path, for_comparison=True)
        if binding is None:
            return false()
        expected = coerce_value(binding, node.value, node.op)
        if isinstance(expected, datetime):
            if expected.tzinfo is None:  # xsd:dateTime may leave the zone out: read as UTC, as stored
                expected = expected.replace(tzinfo=UTC)
            elif not _in_utc_range(expected):
                raise InvalidFilterException(detail=f"the date {node.value!r} is outside the years 1-9999 in UTC")
        source = self._value(binding)
        if source is None:
            # Never stored (write-only or unknown to the store): compares as absent.
            return true() if (node.op == CompareOperator.eq and expected is None) or (
                node.op == CompareOperator.ne and expected is not None) else false()
        kind, exact = _kind(binding), binding.case_exact
        if isinstance(source, Scalar):
            compared = self._compare(source.expr, kind, node.op, expected, exact)
            indexed = self._indexed_equality(binding, node.op, expected)
            return compared if indexed is None else and_(indexed, compared)
        lookup = self._group_member_lookup(binding, node.op, expected)
        if lookup is not None:
            return lookup
        sub = alias_of(binding.field_type, binding.sub_field_name) if binding.sub_field_name else "value"
        absent_holds = (node.op == CompareOperator.eq and expected is None) or (
            node.op == CompareOperator.ne and expected is not None)
        if node.op == CompareOperator.ne:
            # Universal reading: no value equals the operand.
            some_equal = source.exists(
                lambda e: self._compare(e.field(sub, kind), kind, CompareOperator.eq, expected, exact))
            present = and_(not_(source.absent), not_(some_equal))
        else:
            present = and_(not_(source.absent), source.exists(
                lambda e: self._compare(e.field(sub, kind), kind, node.op, expected, exact)))
        return or_(present, source.absent) if absent_holds else present

    def _indexed_equality(self, binding: AttributeBinding, op: CompareOperator, expected: Any) -> Expr | None:
        """For ``userName eq`` (the IdPs' probe) and ``displayName eq``, a condition on the
        indexed identity key, so the lookup costs the same however many users there are.
        The key is coarser than NFC-lowercase (width, spacing, invisible characters:
        bridge.names), so the probe also finds the name a create would collide with."""
        if self.element is not None or op != CompareOperator.eq or not isinstance(expected, str):
            return None
        if self.resolver.is_user and binding.field_name == "user_name" and binding.sub_field_name is None:
            return User.user_name_key == identity_key(expected)
        if not self.resolver.is_user and binding.field_name == "display_name":
            return Group.display_name_key == identity_key(expected)
        return None

    def _group_member_lookup(self, binding: AttributeBinding, op: CompareOperator, expected: Any) -> Expr | None:
        """``groups.value eq ID`` (a group's members, nested ones included, as Entra and Okta
        ask): walk down from that group once instead of walking every user's groups up.
        Group ids are lower-case, so the case-insensitive comparison is an equality."""
        if (self.element is not None or op != CompareOperator.eq or not isinstance(expected, str)
                or not self.resolver.is_user or binding.field_name != "groups"
                or binding.sub_field_name not in (None, "value")):
            return None
        return User.id.in_(users_in_group(scim_key(expected)))

    # -- presence, logic, value paths --------------------------------------------------

    def _present(self, expr: Expr, kind: type) -> Expr:
        if kind is str:
            return and_(expr.is_not(None), expr != "")
        return expr.is_not(None)

    def visit_present(self, node: Present) -> Expr:
        binding = self._bind(node.attr_path, for_comparison=False)
        if binding is None:
            return false()
        if self.element is None and binding.sub_field_name is None and not binding.is_multivalued \
                and isinstance(binding.field_type, type) and hasattr(binding.field_type, "model_fields"):
            # A single complex attribute (name, manager) is present when any sub-attribute is.
            paths = [AttrPath(attr=node.attr_path.attr, sub_attr=alias_of(binding.field_type, name),
                              uri=node.attr_path.uri) for name in binding.field_type.model_fields]
            return or_(*[self.visit_present(Present(attr_path=p)) for p in paths])
        source = self._value(binding)
        if source is None:
            return false()
        if isinstance(source, Scalar):
            return self._present(source.expr, _kind(binding))
        item_model: Any = binding.field_type
        if binding.sub_field_name is not None:
            sub = alias_of(item_model, binding.sub_field_name)
            return source.exists(lambda e: self._present(e.field(sub, _kind(binding)), _kind(binding)))
        subs: list[tuple[str, str]] = [(alias_of(item_model, name), name) for name in item_model.model_fields]
        return source.exists(lambda e: or_(*[
            self._present(e.field(alias, _field_kind(item_model, name)), _field_kind(item_model, name))
            for alias, name in subs]))

    def visit_not(self, node: Not) -> Expr:
        return not_(self.visit(node.expr))

    def visit_logical_expr(self, node: LogicalExpr) -> Expr:
        terms = [self.visit(term) for term in node.terms]
        return and_(*terms) if node.op == LogicalOperator.and_ else or_(*terms)

    def visit_value_path(self, node: ValuePath) -> Expr:
        binding = self._bind(node.attr_path, for_comparison=False)
        if binding is None or not binding.is_multivalued:
            return false()
        source = self._value(binding)
        if not isinstance(source, Elements):
            return false()
        return source.exists(lambda e: SqlFilter(self.dialect, self.model, e, binding).visit(node.val_filter))


def _field_kind(model: type, name: str) -> type:
    from scim2_models.path.resolution import _unwrap_annotated

    annotation = model.model_fields[name].annotation  # type: ignore[attr-defined]
    args = getattr(annotation, "__args__", (annotation,))
    for arg in args:
        arg = _unwrap_annotated(arg)
        for kind in (bool, datetime, int, float):
            if isinstance(arg, type) and issubclass(arg, kind):
                return kind
    return str


def where_clause(dialect: SqlDialect, model: type[Resource[Any]], node: FilterNode) -> Expr:
    try:
        return SqlFilter(dialect, model).visit(node)
    except InvalidFilterException:
        raise
    except (KeyError, AttributeError, TypeError) as exc:
        raise InvalidFilterException(detail=f"cannot evaluate this filter: {exc}") from None


def order_by(dialect: SqlDialect, model: type[Resource[Any]], request: SearchRequest[Any]) -> list[Any]:
    """ORDER BY as SearchRequest.sort: case-insensitive strings, missing values last when
    ascending and first when descending, then the id for a stable order."""
    table = User if issubclass(model, ScimUser) else Group
    if request.sort_by is None:
        return [table.id]
    binding = request.sort_binding(model)
    source = Resolver(dialect, model).value(binding) if binding is not None else None
    if source is None or binding is None:
        return [table.id]
    kind = _kind(binding)
    if isinstance(source, Scalar):
        expr = source.expr
    else:
        sub = alias_of(binding.field_type, binding.sub_field_name) if binding.sub_field_name else "value"
        expr = source.first(sub, kind)
    if kind is str:
        sortable = dialect.exact(expr) if binding.case_exact else dialect.key(expr)
    else:
        sortable = expr
    descending = request.sort_order == SearchRequest.SortOrder.descending
    missing = case((expr.is_(None), 1), else_=0)
    if descending:
        return [missing.desc(), sortable.desc(), table.id]
    return [missing, sortable, table.id]


def _in_utc_range(value: datetime) -> bool:
    """Whether ``value`` stays a date once in UTC (``9999-12-31T23:59:59-14:00`` does not),
    as the store compares it (bridge.store.models.UTCDateTime)."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True
