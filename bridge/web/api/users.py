"""/api/v1/users: search, create, change, deactivate and delete users."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import jsonify
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, select

from bridge.mapping.engine import authorizer
from bridge.mapping.holders import users_holding_role
from bridge.services.errors import InvalidValue
from bridge.services.users import matching, name_prefix
from bridge.store.models import Customer, User
from bridge.web import runtime
from bridge.web.api.common import Page, PageQuery, api_actor, make_blueprint, page_of, unchanged

bp = make_blueprint("api_users", __name__, "users", "Users of every source")

AccessTypeName = Literal["admin", "backend", "api"]
KindName = Literal["internal", "external"]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    user_name: str
    display_name: str | None
    given_name: str | None
    family_name: str | None
    email: str | None
    preferred_language: str | None
    timezone: str | None
    active: bool
    kind: KindName
    access_type: AccessTypeName
    source: str
    external_id: str | None
    customer_id: str | None
    customer_admin: bool
    ip_allowlist: list[str]
    created_at: datetime
    updated_at: datetime
    version: int


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_name: str = Field(min_length=1, max_length=256)
    email: str | None = None
    display_name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    preferred_language: str | None = None
    timezone: str | None = None
    kind: KindName = "internal"
    access_type: AccessTypeName = "backend"
    customer_id: str | None = None
    customer_admin: bool = False
    ip_allowlist: list[str] = Field(default_factory=list)


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = unchanged("refuse the change (412) unless the user is at this version")
    user_name: str = unchanged(min_length=1, max_length=256)
    email: str | None = None
    display_name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    preferred_language: str | None = None
    timezone: str | None = None
    active: bool = unchanged()
    kind: KindName = unchanged()
    access_type: AccessTypeName = unchanged()
    customer_id: str | None = None
    customer_admin: bool = unchanged()
    ip_allowlist: list[str] = unchanged()


class UserQuery(PageQuery):
    q: str | None = Field(default=None, description="id, or part of the userName, display name or e-mail")
    user_name: str | None = Field(default=None, description="the userName starts with this (any case)")
    access_type: AccessTypeName | None = None
    kind: KindName | None = None
    source: str | None = Field(default=None, description="local, scim:CLIENT or ldap:SOURCE")
    active: bool | None = None
    customer: str | None = Field(default=None, description="a customer number: its external users")
    role: str | None = Field(default=None, description="holds this role (at any scope) by a grant of their own, "
                                                       "of a group they are in (also nested) or by a group rule")


class UserPath(BaseModel):
    user_id: str


class DeleteQuery(BaseModel):
    confirm: bool = Field(default=False, description="deleting cannot be undone; must be true")


class UserPage(Page[UserOut]):
    pass


def user_json(user: User) -> dict[str, Any]:
    return UserOut.model_validate(user).model_dump(mode="json")


def holds_role(role: str) -> ColumnElement[bool]:
    """Users holding ``role`` (bridge.mapping.holders), as the authorizer's rules see them."""
    return users_holding_role(runtime().store, authorizer(runtime()).cache.rules, role)


@bp.get("/users", responses={200: UserPage}, summary="Search users")
def list_users(query: UserQuery):  # type: ignore[no-untyped-def]
    stmt = select(User)
    if query.q:
        stmt = stmt.where(matching(query.q))
    if query.user_name:
        stmt = stmt.where(name_prefix(query.user_name))
    if query.access_type:
        stmt = stmt.where(User.access_type == query.access_type)
    if query.kind:
        stmt = stmt.where(User.kind == query.kind)
    if query.source:
        stmt = stmt.where(User.source == query.source)
    if query.active is not None:
        stmt = stmt.where(User.active.is_(query.active))
    if query.customer is not None:
        stmt = stmt.where(User.customer_id.in_(select(Customer.id).where(Customer.number == query.customer)))
    if query.role is not None:
        stmt = stmt.where(holds_role(query.role))
    return page_of(stmt, [User.user_name_key, User.id], query, user_json)


@bp.post("/users", responses={201: UserOut}, summary="Create a local user")
def create_user(body: UserCreate):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        user = uow.users.create(**body.model_dump())
        out = user_json(user)
    return jsonify(out), 201


@bp.get("/users/<user_id>", responses={200: UserOut}, summary="One user")
def get_user(path: UserPath):  # type: ignore[no-untyped-def]
    with runtime().services.read(api_actor()) as uow:
        return jsonify(user_json(uow.users.by_ref(path.user_id)))


@bp.patch("/users/<user_id>", responses={200: UserOut}, summary="Change a user")
def patch_user(path: UserPath, body: UserPatch):  # type: ignore[no-untyped-def]
    changes = body.model_dump(exclude_unset=True)
    version = changes.pop("version", None)
    if not changes:
        raise InvalidValue("nothing to change")
    with runtime().services.unit(api_actor()) as uow:
        user = uow.users.update(uow.users.by_ref(path.user_id), expected_version=version, **changes)
        return jsonify(user_json(user))


@bp.post("/users/<user_id>/deactivate", responses={200: UserOut}, summary="Deactivate a user")
def deactivate_user(path: UserPath):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        return jsonify(user_json(uow.users.deactivate(uow.users.by_ref(path.user_id))))


@bp.delete("/users/<user_id>", responses={204: None}, summary="Delete a user (confirm=true)")
def delete_user(path: UserPath, query: DeleteQuery):  # type: ignore[no-untyped-def]
    if not query.confirm:
        raise InvalidValue("deleting a user cannot be undone: repeat with ?confirm=true", field="confirm")
    with runtime().services.unit(api_actor()) as uow:
        uow.users.delete(uow.users.by_ref(path.user_id))
    return "", 204
