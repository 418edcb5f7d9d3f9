"""/api/v1/rights-groups: the customers' rights-groups (read-only), their roles and members.

A rights-group exists while its customer has remote access and is kept by the
customer service (bridge.services.customers): change it through the customer,
give it roles through /api/v1/grants with ``group_id``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from flask import jsonify
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from bridge.services.errors import NotFound
from bridge.store.models import Customer, Grant, Group, GroupKind, GroupUserMember, Role, User
from bridge.web import runtime
from bridge.web.api.common import Page, PageQuery, make_blueprint, page_json

bp = make_blueprint("api_rights_groups", __name__, "rights-groups",
                    "Customers' rights-groups: named by customers.rights_group_name, every external user in it")


class RoleAtScope(BaseModel):
    grant_id: int
    role: str
    scope: str


class RightsGroupOut(BaseModel):
    id: str = Field(description="the group's id (group_id in /api/v1/grants)")
    name: str
    customer: str = Field(description="the customer's number")
    customer_name: str
    remote_access: bool
    members: int = Field(description="how many users are in it")
    roles: list[RoleAtScope]


class MemberOut(BaseModel):
    user_id: str
    user_name: str
    kind: str
    active: bool
    origins: list[str] = Field(description="why the user is in it: customer:ID (external user), sales:ID "
                                           "(sales representative), source, ...")


class RightsGroupPage(Page[RightsGroupOut]):
    pass


class MemberPage(Page[MemberOut]):
    pass


class RightsGroupQuery(PageQuery):
    customer: str | None = Field(default=None, description="a customer number")


class RightsGroupPath(BaseModel):
    group_id: str


def _groups(customer: str | None) -> Any:
    stmt = (select(Group, Customer).join(Customer, Customer.id == Group.customer_id)
            .where(Group.kind == GroupKind.customer_rights))
    return stmt.where(Customer.number == customer) if customer is not None else stmt


def _json(session: Any, rows: list[tuple[Group, Customer]]) -> list[dict[str, Any]]:
    ids = [group.id for group, _ in rows]
    counts = dict(session.execute(select(GroupUserMember.group_id, func.count(func.distinct(GroupUserMember.user_id)))
                                  .where(GroupUserMember.group_id.in_(ids)).group_by(GroupUserMember.group_id)).all())
    roles: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for grant_id, group_id, role, scope in session.execute(
            select(Grant.id, Grant.group_id, Role.name, Grant.scope_id).join(Role, Role.id == Grant.role_id)
            .where(Grant.group_id.in_(ids)).order_by(Grant.id)):
        roles[group_id].append({"grant_id": grant_id, "role": role, "scope": scope})
    return [RightsGroupOut(id=group.id, name=group.display_name, customer=customer.number,
                           customer_name=customer.name, remote_access=customer.remote_access,
                           members=counts.get(group.id, 0), roles=roles[group.id]).model_dump(mode="json")
            for group, customer in rows]


@bp.get("/rights-groups", responses={200: RightsGroupPage}, summary="The customers' rights-groups")
def list_rights_groups(query: RightsGroupQuery):  # type: ignore[no-untyped-def]
    stmt = _groups(query.customer)
    with runtime().store.read() as session:
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = [(g, c) for g, c in session.execute(stmt.order_by(Group.display_name_key, Group.id)
                                                   .offset(query.offset).limit(query.limit)).all()]
        return page_json(query, total, _json(session, rows))


@bp.get("/rights-groups/<group_id>", responses={200: RightsGroupOut}, summary="One rights-group")
def get_rights_group(path: RightsGroupPath):  # type: ignore[no-untyped-def]
    with runtime().store.read() as session:
        row = session.execute(_groups(None).where(Group.id == path.group_id)).first()
        if row is None:
            raise NotFound(f"no rights-group {path.group_id!r}", field="group_id")
        return jsonify(_json(session, [(row[0], row[1])])[0])


@bp.get("/rights-groups/<group_id>/members", responses={200: MemberPage},
        summary="The users in a rights-group, with why they are in it")
def list_members(path: RightsGroupPath, query: PageQuery):  # type: ignore[no-untyped-def]
    with runtime().store.read() as session:
        if session.execute(_groups(None).where(Group.id == path.group_id)).first() is None:
            raise NotFound(f"no rights-group {path.group_id!r}", field="group_id")
        members = (select(User.id).join(GroupUserMember, GroupUserMember.user_id == User.id)
                   .where(GroupUserMember.group_id == path.group_id).distinct())
        total = session.scalar(select(func.count()).select_from(members.subquery())) or 0
        users = list(session.scalars(select(User).where(User.id.in_(members))
                                     .order_by(User.user_name_key, User.id).offset(query.offset).limit(query.limit)))
        origins: dict[str, list[str]] = defaultdict(list)
        for user_id, origin in session.execute(
                select(GroupUserMember.user_id, GroupUserMember.origin)
                .where(GroupUserMember.group_id == path.group_id, GroupUserMember.user_id.in_([u.id for u in users]))
                .order_by(GroupUserMember.origin)):
            origins[user_id].append(origin)
        items = [MemberOut(user_id=u.id, user_name=u.user_name, kind=u.kind.value, active=u.active,
                           origins=origins[u.id]).model_dump(mode="json") for u in users]
    return page_json(query, total, items)
