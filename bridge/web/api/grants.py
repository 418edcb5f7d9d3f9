"""/api/v1/grants (a role at a scope node for a user or a group) and
/api/v1/user-rights (one right at a node for one user, on top of their roles)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import jsonify
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.services.unit import UnitOfWork
from bridge.store.models import Grant, UserRight
from bridge.web import runtime
from bridge.web.api.common import Page, PageQuery, api_actor, make_blueprint, paged

bp = make_blueprint("api_grants", __name__, "grants", "Roles granted at scope nodes, and individual rights")


class GrantOut(BaseModel):
    id: int
    role: str
    scope: str
    user_id: str | None
    group_id: str | None
    origin: str
    created_at: datetime


class GrantList(Page[GrantOut]):
    pass


class GrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(min_length=1)
    scope: str = Field(default="instance", min_length=1)
    user: str | None = Field(default=None, description="a user's id or userName")
    group_id: str | None = None

    @model_validator(mode="after")
    def _one_holder(self) -> GrantCreate:
        if (self.user is None) == (self.group_id is None):
            raise ValueError("give exactly one of user or group_id")
        return self


class GrantQuery(PageQuery):
    user: str | None = Field(default=None, description="a user's id or userName")
    group_id: str | None = None
    role: str | None = None
    scope: str | None = None


class GrantPath(BaseModel):
    grant_id: int


class UserRightOut(BaseModel):
    user_id: str
    right: str
    scope: str
    created_at: datetime


class UserRightList(Page[UserRightOut]):
    pass


class UserRightBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, description="a user's id or userName")
    right: str = Field(min_length=1)
    scope: str = Field(default="instance", min_length=1)


class UserRightQuery(PageQuery):
    user: str = Field(min_length=1, description="a user's id or userName")


def user_id(uow: UnitOfWork, ref: str) -> str:
    """A user's id from their id or userName (an id wins, as in check)."""
    return uow.users.by_ref(ref, field="user").id


def grant_json(grant: Grant, role: str) -> dict[str, Any]:
    return {"id": grant.id, "role": role, "scope": grant.scope_id, "user_id": grant.user_id,
            "group_id": grant.group_id, "origin": grant.origin, "created_at": grant.created_at.isoformat()}


def user_right_json(row: UserRight) -> dict[str, Any]:
    return {"user_id": row.user_id, "right": row.right_name, "scope": row.scope_id,
            "created_at": row.created_at.isoformat()}


@bp.get("/grants", responses={200: GrantList}, summary="Grants, filtered")
def list_grants(query: GrantQuery):  # type: ignore[no-untyped-def]
    with runtime().services.read(api_actor()) as uow:
        uid = user_id(uow, query.user) if query.user else None
        rows = uow.grants.find(user_id=uid, group_id=query.group_id, role=query.role, scope=query.scope)
        return paged(query, [grant_json(g, name) for g, name in rows])


@bp.post("/grants", responses={201: GrantOut, 200: GrantOut}, summary="Grant a role at a node (200: it existed)")
def create_grant(body: GrantCreate):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        uid = user_id(uow, body.user) if body.user else None
        grant, created = uow.grants.grant(body.role, body.scope, user_id=uid, group_id=body.group_id)
        out = grant_json(grant, body.role)
    return jsonify(out), 201 if created else 200


@bp.delete("/grants/<int:grant_id>", responses={204: None}, summary="Revoke a grant")
def delete_grant(path: GrantPath):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        uow.grants.revoke(uow.grants.get(path.grant_id))
    return "", 204


@bp.get("/user-rights", responses={200: UserRightList}, summary="A user's individual rights")
def list_user_rights(query: UserRightQuery):  # type: ignore[no-untyped-def]
    with runtime().services.read(api_actor()) as uow:
        return paged(query, [user_right_json(r) for r in uow.grants.user_rights(user_id(uow, query.user))])


@bp.post("/user-rights", responses={201: UserRightOut, 200: UserRightOut},
         summary="Give a user one right at a node (200: they had it)")
def give_user_right(body: UserRightBody):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        row, created = uow.grants.give_right(user_id(uow, body.user), body.right, body.scope)
        out = user_right_json(row)
    return jsonify(out), 201 if created else 200


@bp.delete("/user-rights", responses={204: None}, summary="Take an individual right away")
def take_user_right(query: UserRightBody):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        uow.grants.take_right(user_id(uow, query.user), query.right, query.scope)
    return "", 204
