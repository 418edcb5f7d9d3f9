"""/api/v1/customers: customers, their rights-groups, agencies and sales representatives.

Customers are addressed by number. Give the rights-group its rights with
/api/v1/grants (``group_id`` = the customer's ``rights_group.id``).
"""

from __future__ import annotations

from typing import Any

from flask import jsonify
from pydantic import BaseModel, ConfigDict, Field

from bridge.services.errors import InvalidValue
from bridge.services.unit import UnitOfWork
from bridge.store.models import Customer
from bridge.web import runtime
from bridge.web.api.common import Page, PageQuery, api_actor, make_blueprint, page_json, unchanged
from bridge.web.api.grants import user_id

bp = make_blueprint("api_customers", __name__, "customers",
                    "Customers, rights-groups, agencies and sales representatives")


class GroupRef(BaseModel):
    id: str
    name: str


class CustomerOut(BaseModel):
    id: str
    number: str
    name: str
    short_name: str | None
    remote_access: bool
    quota_mb: int | None
    agency: bool
    default_agency: str | None = Field(description="the default agency's customer number")
    agencies: list[str] = Field(description="numbers of the agencies that work for this customer")
    agency_for: list[str] = Field(description="numbers of the customers this agency works for")
    rights_group: GroupRef | None = Field(description="exists once remote access was switched on")
    external_users: int
    sales_representatives: list[str] = Field(description="their userNames")


class CustomerList(Page[CustomerOut]):
    pass


class CustomerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=256)
    short_name: str | None = Field(default=None, max_length=64)
    remote_access: bool = False
    quota_mb: int | None = Field(default=None, ge=0, le=2**31 - 1)
    agency: bool = False
    default_agency: str | None = None


class CustomerPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = unchanged(min_length=1, max_length=64)
    name: str = unchanged(min_length=1, max_length=256)
    short_name: str | None = Field(default=None, max_length=64)
    remote_access: bool = unchanged("off: the external users are deactivated")
    quota_mb: int | None = Field(default=None, ge=0, le=2**31 - 1)
    agency: bool = unchanged()
    default_agency: str | None = None


class CustomerPath(BaseModel):
    number: str


class SalesPath(BaseModel):
    number: str
    user: str = Field(description="the representative's id or userName")


class Confirm(BaseModel):
    confirm: bool = Field(default=False, description="deleting cannot be undone; must be true")


class DeleteCustomerQuery(BaseModel):
    delete_users: bool = Field(default=False, description="also delete the customer's external users")
    confirm: bool = Field(default=False, description="deleting cannot be undone; must be true")


class AgenciesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agencies: list[str] = Field(description="customer numbers of agencies (customers with agency = true)")


class Deleted(BaseModel):
    deleted: int


def customer_json(uow: UnitOfWork, customer: Customer) -> dict[str, Any]:
    group = uow.customers.rights_group(customer.id)
    default = uow.session.get(Customer, customer.default_agency_id) if customer.default_agency_id else None
    return {
        "id": customer.id, "number": customer.number, "name": customer.name, "short_name": customer.short_name,
        "remote_access": customer.remote_access, "quota_mb": customer.quota_mb, "agency": customer.agency,
        "default_agency": default.number if default else None,
        "agencies": [a.number for a in uow.customers.agencies(customer)],
        "agency_for": [c.number for c in uow.customers.agency_for(customer)],
        "rights_group": {"id": group.id, "name": group.display_name} if group else None,
        "external_users": len(uow.customers.external_users(customer)),
        "sales_representatives": [u.user_name for u in uow.customers.sales_representatives(customer)],
    }


class CustomerQuery(PageQuery):
    q: str | None = Field(default=None, max_length=256, description="part of the number, name or short name "
                                                                   "(any case)")
    agency: bool | None = Field(default=None, description="true: agencies only; false: no agencies")
    remote_access: bool | None = Field(default=None, description="true: remote access on; false: off")


@bp.get("/customers", responses={200: CustomerList}, summary="Customers, by number, searched and filtered")
def list_customers(query: CustomerQuery):  # type: ignore[no-untyped-def]
    with runtime().services.read(api_actor()) as uow:
        total, customers = uow.customers.search(query.q, agency=query.agency, remote_access=query.remote_access,
                                                offset=query.offset, limit=query.limit)
        return page_json(query, total, [customer_json(uow, c) for c in customers])


@bp.post("/customers", responses={201: CustomerOut}, summary="Create a customer (remote access: its rights-group)")
def create_customer(body: CustomerCreate):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        customer = uow.customers.create(**body.model_dump())
        out = customer_json(uow, customer)
    return jsonify(out), 201


@bp.get("/customers/<number>", responses={200: CustomerOut}, summary="One customer")
def get_customer(path: CustomerPath):  # type: ignore[no-untyped-def]
    with runtime().services.read(api_actor()) as uow:
        return jsonify(customer_json(uow, uow.customers.get(path.number)))


@bp.patch("/customers/<number>", responses={200: CustomerOut}, summary="Change a customer")
def patch_customer(path: CustomerPath, body: CustomerPatch):  # type: ignore[no-untyped-def]
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise InvalidValue("nothing to change")
    with runtime().services.unit(api_actor()) as uow:
        customer = uow.customers.update(uow.customers.get(path.number), **changes)
        out = customer_json(uow, customer)
    return jsonify(out)


@bp.delete("/customers/<number>", responses={204: None},
           summary="Delete a customer with its rights-group (confirm=true; delete_users=true if it has users)")
def delete_customer(path: CustomerPath, query: DeleteCustomerQuery):  # type: ignore[no-untyped-def]
    if not query.confirm:
        raise InvalidValue("deleting a customer cannot be undone: repeat with ?confirm=true", field="confirm")
    with runtime().services.unit(api_actor()) as uow:
        uow.customers.delete(uow.customers.get(path.number), delete_users=query.delete_users)
    return "", 204


@bp.delete("/customers/<number>/external-users", responses={200: Deleted},
           summary="Delete the external users of a customer without remote access (confirm=true)")
def delete_external_users(path: CustomerPath, query: Confirm):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        count = uow.customers.delete_external_users(uow.customers.get(path.number), confirm=query.confirm)
    return jsonify(deleted=count)


@bp.put("/customers/<number>/agencies", responses={200: CustomerOut}, summary="Set the agencies of a customer")
def put_agencies(path: CustomerPath, body: AgenciesBody):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        customer = uow.customers.get(path.number)
        uow.customers.set_agencies(customer, body.agencies)
        out = customer_json(uow, customer)
    return jsonify(out)


@bp.put("/customers/<number>/sales-representatives/<user>", responses={200: CustomerOut},
        summary="Assign a sales representative (joins the rights-group and the portal groups)")
def assign_sales(path: SalesPath):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        customer = uow.customers.get(path.number)
        uow.customers.assign_sales(customer, uow.users.get(user_id(uow, path.user)))
        out = customer_json(uow, customer)
    return jsonify(out)


@bp.delete("/customers/<number>/sales-representatives/<user>", responses={200: CustomerOut},
           summary="Unassign a sales representative (exactly the memberships the assignment added go)")
def unassign_sales(path: SalesPath):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        customer = uow.customers.get(path.number)
        uow.customers.unassign_sales(customer, uow.users.get(user_id(uow, path.user)))
        out = customer_json(uow, customer)
    return jsonify(out)


class RepPath(BaseModel):
    user: str


class RepCustomers(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customers: list[str] = Field(min_length=1, max_length=10000, description="customer numbers (or ids)")


class RepAssignments(BaseModel):
    user: str
    customers: list[str] = Field(description="every customer the representative is assigned to, by number")
    added: int = Field(description="assignments this request made (the others were there)")


@bp.post("/sales-representatives/<user>/customers", responses={200: RepAssignments},
         summary="Assign one sales representative to several customers at once (all or nothing)")
def assign_sales_many(path: RepPath, body: RepCustomers):  # type: ignore[no-untyped-def]
    from bridge.services.bulk import naming

    with runtime().services.unit(api_actor()) as uow:
        rep = uow.users.by_ref(path.user, field="user")
        added = 0
        for ref in dict.fromkeys(body.customers):
            with naming(ref):
                added += uow.customers.assign_sales(uow.customers.get(ref), rep)
        out = {"user": rep.user_name, "customers": [c.number for c in uow.customers.represented_by(rep)],
               "added": added}
    return jsonify(out)

