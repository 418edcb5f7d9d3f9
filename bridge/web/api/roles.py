"""/api/v1/roles and /api/v1/rights: bundles of rights, includes, copies."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from pydantic import BaseModel, ConfigDict, Field

from bridge.services.roles import RoleFacts
from bridge.services.unit import UnitOfWork
from bridge.store.models import Role
from bridge.web import runtime
from bridge.web.api.common import Page, PageQuery, api_actor, make_blueprint, page_json, paged

bp = make_blueprint("api_roles", __name__, "roles", "Roles: named bundles of rights, which may include roles")


class RoleOut(BaseModel):
    id: str
    name: str
    description: str
    origin: str = Field(description="config (change it in the config file) or api")
    rights: list[str] = Field(description="the rights the role lists itself")
    includes: list[str]
    effective_rights: list[str] = Field(description="its rights and those of every included role")


class RoleList(Page[RoleOut]):
    pass


class RoleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    rights: list[str] = Field(default_factory=list)
    includes: list[str] = Field(default_factory=list)


class RolePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="a new name: grants and includes follow (not for a role "
                                                       "the config declares or a config rule gives)")
    description: str | None = None
    rights: list[str] | None = None
    includes: list[str] | None = None


class RoleCopy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="the new role's name")
    description: str | None = None


class RolePath(BaseModel):
    name: str


class RightOut(BaseModel):
    name: str
    description: str


class RightList(Page[RightOut]):
    pass


class RightCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    description: str = ""


class RightPath(BaseModel):
    name: str


def role_json(uow: UnitOfWork, role: Role, facts: RoleFacts | None = None) -> dict[str, Any]:
    facts = facts or uow.roles.described([role])[role.id]
    return {"id": role.id, "name": role.name, "description": role.description, "origin": role.origin,
            "rights": facts.rights, "includes": facts.includes, "effective_rights": facts.effective_rights}


@bp.get("/roles", responses={200: RoleList}, summary="Every role")
def list_roles(query: PageQuery):  # type: ignore[no-untyped-def]
    with runtime().services.read(api_actor()) as uow:
        roles = uow.roles.all()
        shown = roles[query.offset:query.offset + query.limit]
        facts = uow.roles.described(shown)
        return page_json(query, len(roles), [role_json(uow, r, facts[r.id]) for r in shown])


@bp.post("/roles", responses={201: RoleOut}, summary="Create a role")
def create_role(body: RoleCreate):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        role = uow.roles.create(body.name, description=body.description, rights=body.rights, includes=body.includes)
        out = role_json(uow, role)
    return jsonify(out), 201


@bp.get("/roles/<name>", responses={200: RoleOut}, summary="One role")
def get_role(path: RolePath):  # type: ignore[no-untyped-def]
    with runtime().services.read(api_actor()) as uow:
        return jsonify(role_json(uow, uow.roles.get(path.name)))


@bp.patch("/roles/<name>", responses={200: RoleOut},
          summary="Change a role's name, rights, includes or description")
def patch_role(path: RolePath, body: RolePatch):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        role = uow.roles.update(uow.roles.get(path.name), description=body.description, rights=body.rights,
                                includes=body.includes)
        if body.name is not None:
            role = uow.roles.rename(role, body.name)
        out = role_json(uow, role)
    return jsonify(out)


@bp.delete("/roles/<name>", responses={204: None}, summary="Delete a role (its grants go with it)")
def delete_role(path: RolePath):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        uow.roles.delete(uow.roles.get(path.name))
    return "", 204


@bp.post("/roles/<name>/copy", responses={201: RoleOut}, summary="Copy a role under a new name")
def copy_role(path: RolePath, body: RoleCopy):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        role = uow.roles.copy(uow.roles.get(path.name), body.name, body.description)
        out = role_json(uow, role)
    return jsonify(out), 201


@bp.get("/rights", responses={200: RightList}, summary="Every known right")
def list_rights(query: PageQuery):  # type: ignore[no-untyped-def]
    with runtime().services.read(api_actor()) as uow:
        return paged(query, [{"name": r.name, "description": r.description} for r in uow.roles.list_rights()])


@bp.post("/rights", responses={201: RightOut}, summary="Declare a right (roles declare theirs on the way)")
def create_right(body: RightCreate):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        right = uow.roles.ensure_right(body.name, body.description)
        out = {"name": right.name, "description": right.description}
    return jsonify(out), 201


@bp.delete("/rights/<name>", responses={204: None}, summary="Delete a right from every role")
def delete_right(path: RightPath):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        uow.roles.delete_right(path.name)
    return "", 204
