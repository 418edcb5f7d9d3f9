"""Customers, their rights-groups, agencies and sales representatives.

The rules, enforced here whoever writes:

- a customer with ``remote_access`` has a rights-group named by the configured
  pattern (``X{number}-{name}``); it follows renames;
- every external user is in ``RemoteUsers``, an external administrator also in
  ``RemoteAdministrators``, and an external user of a customer with a
  rights-group is in it. Those memberships carry their own origins
  (``external``, ``external-admin``, ``customer:ID``), so no source's
  membership sync can remove them;
- an external user of a customer without remote access is inactive: switching
  ``remote_access`` off deactivates them (deleting them needs a confirmed,
  separate request), and no source can switch them on again meanwhile;
- an assigned sales representative joins the customer's rights-group,
  ``RemoteUsers`` and ``RemoteAdministrators`` with origin ``sales:ID``, while the
  customer's remote access is on (the assignment stays while it is off, unused);
  unassigning removes exactly those memberships;
- customers are keyed by a surrogate id: deleting one deletes its
  rights-group (and the grants on it) and, confirmed, its external users, so a
  new customer with the same number starts with nothing;
- a user given the number of a customer that does not exist yet keeps it as
  pending (``attributes[PENDING_NUMBER]``); whoever creates that customer
  (or renumbers one to it) links the user, who then joins the customer's
  groups like any other. The link replaces the pending number, so a customer
  deleted and created again does not get the old one's users back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Unpack

from sqlalchemy import func, or_, select

from bridge.config import CustomersConfig
from bridge.mapping.rules import compiled_rules
from bridge.names import identity_key
from bridge.services import audit
from bridge.services.errors import Conflict, InvalidValue, NotFound, ServiceError
from bridge.services.fields import CustomerChanges
from bridge.store.among import among
from bridge.store.db import like_literal
from bridge.store.models import (
    Customer,
    CustomerAgency,
    Group,
    GroupGroupMember,
    GroupKind,
    GroupUserMember,
    SalesAssignment,
    User,
    UserKind,
)

if TYPE_CHECKING:
    from bridge.services.unit import UnitOfWork

EXTERNAL, EXTERNAL_ADMIN = "external", "external-admin"
CUSTOMER_PREFIX, SALES_PREFIX = "customer:", "sales:"
PORTAL_SOURCE = "local"
# Where a user keeps the number of a customer that does not exist yet (SCIM shows it as customerNumber);
# a name no source attribute has (an LDAP attribute mapped as customerNumber is not a pending link).
PENDING_NUMBER = "portal.pendingCustomerNumber"
FIELDS = ("number", "name", "short_name", "remote_access", "quota_mb", "agency", "default_agency_id")
NAME_FIELDS = ("number", "name", "short_name")
# Fields a rule can read besides the user's attributes.
CORE_FIELDS = ("user_name", "display_name", "given_name", "family_name", "email", "external_id")


def rule_attributes(state: Mapping[str, Any]) -> dict[str, Any]:
    """What an attribute rule reads of a user: the core fields, then the source's attributes."""
    attributes = {k: state.get(k) for k in CORE_FIELDS}
    attributes.update(state.get("attributes") or {})
    return attributes


def is_managed(origin: str) -> bool:
    """Memberships this service owns (and keeps exactly as its rules say)."""
    return origin in (EXTERNAL, EXTERNAL_ADMIN) or origin.startswith((CUSTOMER_PREFIX, SALES_PREFIX))


def _snapshot(customer: Customer) -> dict[str, Any]:
    return {field: getattr(customer, field) for field in FIELDS}


@dataclass
class CustomerService:
    uow: UnitOfWork

    @property
    def _config(self) -> CustomersConfig:
        return self.uow.config.customers

    # -- reads -------------------------------------------------------------------

    def by_ref(self, ref: str) -> Customer | None:
        """The customer a caller names by number or by id (a number wins: numbers are
        what people type), or None (no row holds a NUL; PostgreSQL refuses one even in a query)."""
        if "\x00" in str(ref):
            return None
        return self.find(ref) or self.uow.session.get(Customer, str(ref).strip())

    def get(self, ref: str) -> Customer:
        customer = self.by_ref(ref)
        if customer is None:
            raise NotFound(f"no customer {ref!r} (by number or id)", field="customer")
        return customer

    def find(self, number: str) -> Customer | None:
        if "\x00" in str(number):  # as in by_ref
            return None
        return self.uow.session.scalar(select(Customer).where(Customer.number == str(number).strip()))

    def all(self) -> list[Customer]:
        return list(self.uow.session.scalars(select(Customer).order_by(Customer.number)))

    def search(self, text: str | None = None, *, agency: bool | None = None, remote_access: bool | None = None,
               offset: int = 0, limit: int = 100) -> tuple[int, list[Customer]]:
        """Customers whose number, name or short name holds ``text`` (any case; ``%`` and
        ``_`` literal), optionally only agencies or only those with remote access on, by
        number: the total and one page (the portals' pick-lists of customers and agencies)."""
        stmt = select(Customer)
        if text:
            like = "%" + like_literal(text.strip().casefold()) + "%"
            stmt = stmt.where(or_(*(func.lower(column).like(like, escape="\\")
                                    for column in (Customer.number, Customer.name, Customer.short_name))))
        if agency is not None:
            stmt = stmt.where(Customer.agency.is_(agency))
        if remote_access is not None:
            stmt = stmt.where(Customer.remote_access.is_(remote_access))
        total = self.uow.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = list(self.uow.session.scalars(stmt.order_by(Customer.number).offset(offset).limit(limit)))
        return total, rows

    def rights_group(self, customer_id: str) -> Group | None:
        return self.uow.session.scalar(select(Group).where(Group.customer_id == customer_id,
                                                           Group.kind == GroupKind.customer_rights))

    def external_users(self, customer: Customer) -> list[User]:
        return list(self.uow.session.scalars(select(User).where(User.customer_id == customer.id,
                                                                User.kind == UserKind.external)
                                             .order_by(User.user_name_key)))

    def agencies(self, customer: Customer) -> list[Customer]:
        return list(self.uow.session.scalars(
            select(Customer).join(CustomerAgency, CustomerAgency.agency_id == Customer.id)
            .where(CustomerAgency.customer_id == customer.id).order_by(Customer.number)))

    def agency_for(self, agency: Customer) -> list[Customer]:
        """The customers this agency works for."""
        return list(self.uow.session.scalars(
            select(Customer).join(CustomerAgency, CustomerAgency.customer_id == Customer.id)
            .where(CustomerAgency.agency_id == agency.id).order_by(Customer.number)))

    def sales_representatives(self, customer: Customer) -> list[User]:
        return list(self.uow.session.scalars(
            select(User).join(SalesAssignment, SalesAssignment.user_id == User.id)
            .where(SalesAssignment.customer_id == customer.id).order_by(User.user_name_key)))

    def represented_by(self, user: User) -> list[Customer]:
        """The customers ``user`` is assigned to as sales representative, by number."""
        return list(self.uow.session.scalars(
            select(Customer).join(SalesAssignment, SalesAssignment.customer_id == Customer.id)
            .where(SalesAssignment.user_id == user.id).order_by(Customer.number)))

    # -- writes ------------------------------------------------------------------

    def create(self, number: str, name: str, *, short_name: str | None = None, remote_access: bool = False,
               quota_mb: int | None = None, agency: bool = False, default_agency: str | None = None) -> Customer:
        number, name = self._text(number, "number"), self._text(name, "name")
        if self.find(number) is not None:
            raise Conflict(f"a customer with number {number!r} exists already", field="number")
        customer = Customer(number=number, name=name, short_name=short_name or None, remote_access=False,
                            quota_mb=self._quota(quota_mb), agency=bool(agency))
        self.uow.session.add(customer)
        self.uow.session.flush()
        if default_agency is not None:
            customer.default_agency_id = self._agency(customer, default_agency).id
        audit.record(self.uow.session, self.uow.actor, "customer.create", "customer", customer.id, number,
                     audit.diff({}, _snapshot(customer)))
        if remote_access:
            self.update(customer, remote_access=True)
        self._link_pending(customer)
        return customer

    def update(self, customer: Customer, **given: Unpack[CustomerChanges]) -> Customer:
        """Change fields; ``default_agency`` takes a customer number (or None)."""
        changes: dict[str, Any] = dict(given)
        unknown = set(changes) - set(FIELDS) - {"default_agency"} - {"default_agency_id"}
        if unknown:
            raise InvalidValue(f"unknown customer fields: {', '.join(sorted(unknown))}")
        if "default_agency" in changes:
            number = changes.pop("default_agency")
            changes["default_agency_id"] = None if number is None else self._agency(customer, number).id
        for key in ("number", "name"):
            if key in changes:
                changes[key] = self._text(changes[key], key)
        if "quota_mb" in changes:
            changes["quota_mb"] = self._quota(changes["quota_mb"])
        if "short_name" in changes:
            changes["short_name"] = changes["short_name"] or None
        changed = {k: v for k, v in changes.items() if getattr(customer, k) != v}
        if "number" in changed and self.find(changed["number"]) is not None:
            raise Conflict(f"a customer with number {changed['number']!r} exists already", field="number")
        if changed.get("agency") is False:
            served = self.agency_for(customer) + list(self.uow.session.scalars(
                select(Customer).where(Customer.default_agency_id == customer.id)))
            if served:
                numbers = ", ".join(sorted({c.number for c in served}))
                raise Conflict(f"customer {customer.number!r} is the agency of {numbers}; "
                               "remove it there first", field="agency")
        if not changed:
            return customer
        before = _snapshot(customer)
        for key, value in changed.items():
            setattr(customer, key, value)
        customer.updated_at = self.uow.now()
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "customer.update", "customer", customer.id,
                     customer.number, audit.diff(before, _snapshot(customer)))
        group = self.rights_group(customer.id)
        if customer.remote_access and group is None:
            self._create_rights_group(customer)
        elif group is not None and set(changed) & set(NAME_FIELDS):
            self.uow.groups.update(group, display_name=self._group_name(customer))
        if changed.get("remote_access") is False:
            for user in self.external_users(customer):
                if user.active:
                    self.uow.users.update(user, active=False, check_ownership=False)
        if "remote_access" in changed:  # its sales representatives' access follows it, both ways
            for rep in self.sales_representatives(customer):
                self.sync_memberships(rep)
        if "number" in changed:
            self._link_pending(customer)
        return customer

    def link_fields(self, number: str | None, attributes: dict[str, Any]) -> dict[str, Any]:
        """The user fields that give a user the customer numbered ``number`` (None: no
        customer): its id, or, while no customer has that number, the number kept pending
        in ``attributes`` (changed in place) until one is created."""
        attributes.pop(PENDING_NUMBER, None)
        if not number or not str(number).strip():
            return {"customer_id": None}
        number = str(number).strip()
        if not self.uow.may_name_customer(number):
            source = self.uow.actor.source
            raise self.uow.refuse("customerNumber", f"{source!r} may not link users to customer {number!r}; the "
                                  f"config allows it with [scim.clients.{source.removeprefix('scim:')}] customers "
                                  f"= [\"{number}\"]", "customer", None, number)
        customer = self.find(number)
        if customer is None:
            attributes[PENDING_NUMBER] = str(number).strip()
            return {"customer_id": None}
        return {"customer_id": customer.id}

    def pending_users(self, number: str) -> list[User]:
        """Users waiting for a customer with this number (a scan: customers are created rarely)."""
        return list(self.uow.session.scalars(
            select(User).where(User.customer_id.is_(None), User.attributes[PENDING_NUMBER].as_string() == number)
            .order_by(User.user_name_key)))

    def _link_pending(self, customer: Customer) -> None:
        for user in self.pending_users(customer.number):
            attributes = {k: v for k, v in (user.attributes or {}).items() if k != PENDING_NUMBER}
            # The link is the portal's decision, made for whichever source owns the user.
            self.uow.users.update(user, customer_id=customer.id, attributes=attributes, check_ownership=False)

    def delete_external_users(self, customer: Customer, *, confirm: bool) -> int:
        """Delete the customer's external users: only confirmed, and only once remote
        access is off (switching it off deactivates them first)."""
        if not confirm:
            raise InvalidValue("deleting users cannot be undone: confirm the request", field="confirm")
        if customer.remote_access:
            raise Conflict(f"customer {customer.number!r} still has remote access; switch it off first")
        users = self.external_users(customer)
        for user in users:
            self.uow.users.delete(user, check_ownership=False)
        return len(users)

    def delete(self, customer: Customer, *, delete_users: bool = False) -> None:
        """Delete the customer with its rights-group; its external users too, which
        must be confirmed (``delete_users``) when there are any."""
        external = self.external_users(customer)
        if external and not delete_users:
            raise Conflict(f"customer {customer.number!r} has {len(external)} external users; "
                           "confirm deleting them too", field="delete_users")
        for rep in self.sales_representatives(customer):
            self.unassign_sales(customer, rep)
        for user in external:
            self.uow.users.delete(user, check_ownership=False)
        for user in list(self.uow.session.scalars(select(User).where(User.customer_id == customer.id))):
            self.uow.users.update(user, customer_id=None, check_ownership=False)
        group = self.rights_group(customer.id)
        if group is not None:
            self.uow.groups.delete(group, by_customer=True)
        audit.record(self.uow.session, self.uow.actor, "customer.delete", "customer", customer.id,
                     customer.number, audit.diff(_snapshot(customer), {}))
        self.uow.session.delete(customer)
        self.uow.session.flush()

    def set_agencies(self, customer: Customer, numbers: Iterable[str]) -> list[Customer]:
        """The agencies that work for this customer, exactly these."""
        wanted = {self._agency(customer, n).id for n in numbers}
        current = set(self.uow.session.scalars(select(CustomerAgency.agency_id)
                                               .where(CustomerAgency.customer_id == customer.id)))
        if wanted == current:
            return self.agencies(customer)
        for agency_id in current - wanted:
            self.uow.session.delete(self.uow.session.get(CustomerAgency, (customer.id, agency_id)))
        self.uow.session.add_all(CustomerAgency(customer_id=customer.id, agency_id=a) for a in wanted - current)
        self.uow.session.flush()
        number = dict(self.uow.session.execute(select(Customer.id, Customer.number)
                                               .where(Customer.id.in_(wanted | current))).all())
        audit.record(self.uow.session, self.uow.actor, "customer.agencies", "customer", customer.id,
                     customer.number, {"agencies": [sorted(number[i] for i in current),
                                                    sorted(number[i] for i in wanted)]})
        return self.agencies(customer)

    # -- sales representatives ------------------------------------------------------

    def assign_sales(self, customer: Customer, user: User) -> bool:
        """Assign an internal sales representative; returns False when already assigned."""
        if user.kind != UserKind.internal:
            raise InvalidValue(f"{user.user_name!r} is an external user; sales representatives are internal",
                               field="user")
        sales_group = self._config.sales_group
        if sales_group and not self._in_group_named(user, sales_group):
            raise Conflict(f"{user.user_name!r} is not in the group {sales_group!r} of possible sales "
                           "representatives", field="user")
        if self.uow.session.get(SalesAssignment, (customer.id, user.id)) is not None:
            return False
        self.uow.session.add(SalesAssignment(customer_id=customer.id, user_id=user.id))
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "customer.sales_assign", "customer", customer.id,
                     customer.number, {"sales_representative": [None, user.user_name]})
        self.sync_memberships(user)
        return True

    def unassign_sales(self, customer: Customer, user: User) -> None:
        assignment = self.uow.session.get(SalesAssignment, (customer.id, user.id))
        if assignment is None:
            raise NotFound(f"{user.user_name!r} is not a sales representative of customer {customer.number!r}",
                           field="user")
        self.uow.session.delete(assignment)
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "customer.sales_unassign", "customer", customer.id,
                     customer.number, {"sales_representative": [user.user_name, None]})
        self.sync_memberships(user)

    # -- what every user write runs (bridge.services.users calls these) ------------------

    def rule_effects(self, source: str, state: dict[str, Any]) -> dict[str, Any]:
        """The portal fields that the attribute rules and the remote-access rule set for
        a user in ``state`` (the fields after the write); the first matching rule wins."""
        rules = compiled_rules(self.uow.config.mapping)
        out: dict[str, Any] = {}
        # (no attribute rules: nothing to read the user's attributes for, 100,000 times in a sync)
        effects = rules.for_user(source, rule_attributes(state)) if rules.attribute_rules else ()
        for effect in effects:
            if effect.kind is not None and "kind" not in out:
                out["kind"] = UserKind(effect.kind)
            if effect.customer_missing is not None and "customer_id" not in out:
                raise InvalidValue(f"mapping rule #{effect.index} makes the user a user of customer "
                                   f"{effect.customer_missing!r}, but an attribute it needs is missing",
                                   field="attributes")
            if effect.customer_number is not None and "customer_id" not in out:
                self._check_rule_customer(source, effect.index, effect.customer_number,
                                          effect.customer_from_attributes)
                customer = self.find(effect.customer_number)
                if customer is None:
                    raise InvalidValue(f"mapping rule #{effect.index}: no customer with number "
                                       f"{effect.customer_number!r}", field="customer_id")
                out["customer_id"] = customer.id
        customer_id = out.get("customer_id", state.get("customer_id"))  # the fields after the rules
        if state.get("active") and out.get("kind", state.get("kind")) == UserKind.external and customer_id:
            customer = self.uow.session.get(Customer, customer_id)
            if customer is not None and not customer.remote_access:
                out["active"] = False
        return out

    def _check_rule_customer(self, source: str, index: int, number: str, from_attributes: bool) -> None:
        """A rule whose customer number is a template reads it from attributes the user's
        source sets: for a SCIM source that is the source naming the customer, so its
        ``[scim.clients.NAME] customers`` applies as to a customerNumber it sends."""
        if not (from_attributes and source.startswith("scim:")):
            return
        client = source.removeprefix("scim:")
        if not self.uow.config.scim.client(client).may_name_customer(number):
            raise self.uow.refuse("customerNumber", f"mapping rule #{index} would link a user of {source!r} to "
                                  f"customer {number!r}, from the user's own attributes; the config allows it "
                                  f"with [scim.clients.{client}] customers = [\"{number}\"]", "customer", None, number)

    def sync_memberships(self, user: User) -> None:
        """Make the user's managed memberships exactly what the rules say."""
        desired: set[tuple[str, str]] = set()
        if user.kind == UserKind.external:
            desired.add((self.portal_group(self._config.remote_users_group).id, EXTERNAL))
            if user.customer_admin:
                desired.add((self.portal_group(self._config.remote_admins_group).id, EXTERNAL_ADMIN))
            group = self.rights_group(user.customer_id) if user.customer_id else None
            if group is not None and user.customer_id:
                desired.add((group.id, CUSTOMER_PREFIX + user.customer_id))
        sales_group = self._config.sales_group
        still_sales = not sales_group or self._in_group_named(user, sales_group)  # else assigned, but unused
        assigned = select(SalesAssignment.customer_id).join(Customer, Customer.id == SalesAssignment.customer_id) \
            .where(SalesAssignment.user_id == user.id, Customer.remote_access.is_(True))
        for customer_id in self.uow.session.scalars(assigned) if still_sales else ():
            # an assignment counts while the customer's remote access is on (kept, not used, while off)
            origin = SALES_PREFIX + customer_id
            desired.add((self.portal_group(self._config.remote_users_group).id, origin))
            desired.add((self.portal_group(self._config.remote_admins_group).id, origin))
            group = self.rights_group(customer_id)
            if group is not None:
                desired.add((group.id, origin))
        current = {(m.group_id, m.origin) for m in self.uow.session.scalars(
            select(GroupUserMember).where(GroupUserMember.user_id == user.id)) if is_managed(m.origin)}
        for group_id, origin in sorted(desired - current):
            self.uow.groups.change_members(self.uow.groups.get(group_id), add_users=[user.id], origin=origin,
                                           check_ownership=False)
        for group_id, origin in sorted(current - desired):
            self.uow.groups.change_members(self.uow.groups.get(group_id), remove_users=[user.id], origin=origin,
                                           check_ownership=False)

    def sales_group_changed(self, group_name: str, user_ids: set[str]) -> None:
        """Members joined or left the group ``group_name``: when it is the sales group, the
        assignments of those who left stop counting (and count again when they return).
        Nested groups of the sales group are not followed here (a user's next write is)."""
        name = self._config.sales_group
        if not name or not user_ids or identity_key(group_name) != identity_key(name):
            return
        self.uow.session.flush()  # the membership just changed, for _in_group_named
        for user_id in sorted(user_ids):
            user = self.uow.session.get(User, user_id)
            if user is not None and self.uow.session.scalar(
                    select(SalesAssignment.customer_id).where(SalesAssignment.user_id == user_id).limit(1)):
                self.sync_memberships(user)

    def rename_rights_groups(self) -> list[str]:
        """Give every customer's rights-group the name the config's pattern makes now
        (``customers.rights_group_name`` changed): each rename is audited as the group's
        update. A name another customer's group has already is left, and said."""
        problems = []
        for group in list(self.uow.session.scalars(select(Group).where(Group.kind == GroupKind.customer_rights))):
            customer = self.uow.session.get(Customer, group.customer_id) if group.customer_id else None
            if customer is None:
                continue
            try:
                wanted = self._group_name(customer)
                if wanted != group.display_name:
                    with self.uow.session.begin_nested():  # a name it cannot have leaves this one as it is
                        self.uow.groups.update(group, display_name=wanted)
            except ServiceError as exc:
                problems.append(f"the rights-group of customer {customer.number} keeps its name "
                                f"{group.display_name!r}: {exc.message}")
        return problems

    # -- helpers -----------------------------------------------------------------------

    def _create_rights_group(self, customer: Customer) -> Group:
        name = self._group_name(customer)
        group = self._new_group(name, GroupKind.customer_rights, customer.id)
        for user in self.external_users(customer):
            self.sync_memberships(user)
        for rep in self.sales_representatives(customer):
            self.sync_memberships(rep)
        return group

    def _group_name(self, customer: Customer) -> str:
        pattern = self._config.rights_group_name
        if "{short_name}" in pattern and not customer.short_name:
            raise InvalidValue(f"the rights-group name pattern {pattern!r} needs the customer's short name",
                               field="short_name")
        name = pattern.format(number=customer.number, name=customer.name, short_name=customer.short_name)
        clash = self.uow.session.scalar(select(Group).where(
            Group.display_name_key == identity_key(name), Group.kind == GroupKind.customer_rights,
            Group.customer_id != customer.id))
        if clash is not None:
            raise Conflict(f"another customer's rights-group is named {name!r} already", field="name")
        return name

    def portal_group(self, name: str) -> Group:
        """A portal group (RemoteUsers...), created on first need, owned by the portal."""
        group = self.uow.session.scalar(select(Group).where(Group.kind == GroupKind.portal,
                                                            Group.display_name_key == identity_key(name)))
        return group if group is not None else self._new_group(name, GroupKind.portal, None)

    def _new_group(self, name: str, kind: GroupKind, customer_id: str | None) -> Group:
        group = Group(display_name=name, display_name_key=identity_key(name), kind=kind,
                      source=PORTAL_SOURCE, customer_id=customer_id)
        self.uow.session.add(group)
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "group.create", "group", group.id, name,
                     {"display_name": [None, name], "kind": [None, kind.value], "customer_id": [None, customer_id]})
        return group

    def _in_group_named(self, user: User, name: str) -> bool:
        targets = set(self.uow.session.scalars(select(Group.id).where(Group.display_name_key == identity_key(name))))
        seen: set[str] = set()
        frontier = set(self.uow.session.scalars(select(GroupUserMember.group_id)
                                                .where(GroupUserMember.user_id == user.id)))
        while frontier:
            if frontier & targets:
                return True
            seen |= frontier
            frontier = set(self.uow.session.scalars(select(GroupGroupMember.group_id)
                                                    .where(among(GroupGroupMember.child_group_id, frontier)))) - seen
        return False

    def _agency(self, customer: Customer, number: str) -> Customer:
        agency = self.get(number)
        if agency.id == customer.id:
            raise InvalidValue(f"customer {customer.number!r} cannot be its own agency", field="agencies")
        if not agency.agency:
            raise InvalidValue(f"customer {agency.number!r} is not an agency", field="agencies")
        return agency

    @staticmethod
    def _text(value: Any, field: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise InvalidValue(f"a customer needs a {field}", field=field)
        if "\x00" in value:
            raise InvalidValue(f"{field}: contains a NUL character", field=field)
        return value.strip()

    @staticmethod
    def _quota(value: Any) -> int | None:
        if value is not None and (not isinstance(value, int) or value < 0):
            raise InvalidValue("quota_mb is a whole number of megabytes, 0 or more", field="quota_mb")
        return value
