"""/api/v1/scopes: the scope tree (instance > company_group > pool, as configured)."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from pydantic import BaseModel, ConfigDict, Field

from bridge.store.models import ScopeNode
from bridge.web import runtime
from bridge.web.api.common import Page, PageQuery, api_actor, make_blueprint

bp = make_blueprint("api_scopes", __name__, "scopes", "The scope tree: a role granted at a node applies below it")


class ScopeOut(BaseModel):
    id: str = Field(description="LEVEL:NAME, or instance")
    level: str
    name: str
    parent: str | None
    origin: str = Field(description="config (change it in the config file), api or builtin")


class ScopeList(Page[ScopeOut]):
    levels: list[str] = Field(description="the configured levels, top first")


class ScopeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200, description="LEVEL:NAME, like pool:north-1")
    parent: str = "instance"
    name: str | None = Field(default=None, description="display name; default: the NAME part of the id")


class ScopePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    parent: str | None = Field(default=None, description="move the node (and its subtree) here")


class ScopePath(BaseModel):
    scope_id: str


def scope_json(node: ScopeNode) -> dict[str, Any]:
    return {"id": node.id, "level": node.level, "name": node.name, "parent": node.parent_id, "origin": node.origin}


@bp.get("/scopes", responses={200: ScopeList}, summary="The whole tree, as a list of nodes")
def list_scopes(query: PageQuery):  # type: ignore[no-untyped-def]
    with runtime().services.read(api_actor()) as uow:
        nodes = uow.scopes.all()
        return jsonify(total=len(nodes), offset=query.offset, limit=query.limit, levels=uow.scopes.levels,
                       items=[scope_json(n) for n in nodes[query.offset:query.offset + query.limit]])


@bp.post("/scopes", responses={201: ScopeOut}, summary="Add a node")
def create_scope(body: ScopeCreate):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        out = scope_json(uow.scopes.create(body.id, body.parent, body.name))
    return jsonify(out), 201


@bp.get("/scopes/<scope_id>", responses={200: ScopeOut}, summary="One node")
def get_scope(path: ScopePath):  # type: ignore[no-untyped-def]
    with runtime().services.read(api_actor()) as uow:
        return jsonify(scope_json(uow.scopes.get(path.scope_id)))


@bp.patch("/scopes/<scope_id>", responses={200: ScopeOut}, summary="Rename or move a node")
def patch_scope(path: ScopePath, body: ScopePatch):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        out = scope_json(uow.scopes.update(uow.scopes.get(path.scope_id), name=body.name, parent=body.parent))
    return jsonify(out)


@bp.delete("/scopes/<scope_id>", responses={204: None}, summary="Delete a leaf node (its grants go with it)")
def delete_scope(path: ScopePath):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        uow.scopes.delete(uow.scopes.get(path.scope_id))
    return "", 204
