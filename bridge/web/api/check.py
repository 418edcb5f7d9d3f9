"""POST /api/v1/check and GET /api/v1/users/{id}/rights: the portal's hot path.

Answered from the process's authorizer (bridge.mapping.engine), which reads one
counter row per request and otherwise works from memory.
"""

from __future__ import annotations

from typing import Any, Literal

from flask import jsonify
from pydantic import BaseModel, ConfigDict, Field

from bridge.mapping.engine import CheckItem, Decision, authorizer
from bridge.web import runtime
from bridge.web.api.common import error_response, make_blueprint

bp = make_blueprint("api_check", __name__, "check", "May this user do that here, and why")


MAX_ITEMS = 1000


class CheckItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, description="the user's id or userName")
    right: str = Field(min_length=1, max_length=128)
    scope: str = Field(default="instance", min_length=1, description="TYPE:NAME, or instance")
    interactive: bool = Field(default=False, description="an interactive session: API users may nothing")


class CheckBody(BaseModel):
    """One check (``user``, ``right``, ``scope``) or many (``items``), as SpiceDB's
    CheckPermission and CheckBulkPermissions."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, min_length=1, description="the user's id or userName")
    right: str | None = Field(default=None, min_length=1, max_length=128)
    scope: str = Field(default="instance", min_length=1, description="TYPE:NAME, or instance")
    explain: bool = Field(default=False, description="also return every chain that grants the right")
    interactive: bool = Field(default=False, description="an interactive session: API users may nothing")
    items: list[CheckItemIn] | None = Field(default=None, min_length=1, max_length=MAX_ITEMS,
                                            description="many checks at once, answered in order in ``results``")



class Link(BaseModel):
    type: Literal["user", "group", "grant", "rule", "individual", "access_type"]
    id: str | None
    name: str
    origins: list[str] | None = Field(default=None, description="why the user or group is in this group")


class ChainOut(BaseModel):
    via: list[Link] = Field(description="from the user through groups to the grant or mapping rule")
    role: str | None = Field(description="the role granted (none for an individual right or admin)")
    includes: list[str] = Field(description="included roles from the granted role to the one listing the right")
    scope: str = Field(description="the node where it was granted: the asked one or an ancestor")


class RuleRef(BaseModel):
    id: str = Field(description="the rule's number in the config")
    name: str = Field(description="the rule as explain shows it")


class AccessTypeOut(BaseModel):
    value: Literal["admin", "backend", "api"]
    rule: RuleRef | None = Field(description="the mapping rule that set it; none: the source's or operator's value")
    note: str | None = Field(description="why it is not what the rules say (a source that may not hold admins, "
                             "the last active admin)")


class CheckOut(BaseModel):
    allowed: bool
    because: list[ChainOut] | None = Field(default=None, description="with explain: every granting chain (at "
                                           "most 100)")
    truncated: bool | None = Field(default=None, description="with explain, true when more chains grant it "
                                   "than an explain lists")
    access_type: AccessTypeOut | None = Field(default=None, description="with explain, when an access-type "
                                              "mapping rule set the access type or could not: which, or why")


class ItemError(BaseModel):
    code: str
    message: str
    field: str | None


class CheckResult(CheckOut):
    allowed: bool | None = None  # type: ignore[assignment]
    error: ItemError | None = Field(default=None, description="this item alone could not be checked")


class CheckAnswer(CheckOut):
    """One check's answer (``allowed``...), or with ``items`` the ``results`` alone."""

    allowed: bool | None = None  # type: ignore[assignment]
    results: list[CheckResult] | None = Field(default=None, description="with items: one per item, in their order")


class ScopesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, description="the user's id or userName")
    right: str = Field(min_length=1, max_length=128)
    interactive: bool = False
    explain: bool = Field(default=False, description="also the chains that grant it at each granting node")


class ScopesOut(BaseModel):
    user_id: str
    user_name: str
    right: str
    granted_at: list[str] = Field(description="the nodes where the right is granted (it holds there and below)")
    scopes: list[str] = Field(description="every node where the user may exercise the right")
    because: dict[str, list[ChainOut]] | None = Field(default=None, description="with explain: per granting node")


class UsersBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    right: str = Field(min_length=1, max_length=128)
    scope: str = Field(default="instance", min_length=1)
    interactive: bool = False
    explain: bool = Field(default=False, description="also every chain that grants it, per user")
    limit: int = Field(default=100, ge=1, le=1000)
    after: str = Field(default="", max_length=64, description="the ``next`` of the previous page")


class UserAllowed(BaseModel):
    id: str
    user_name: str
    because: list[ChainOut] | None = None


class UsersOut(BaseModel):
    right: str
    scope: str
    users: list[UserAllowed]
    next: str | None = Field(description="pass as ``after`` for the next page; null: there are no more")


class RightsPath(BaseModel):
    user_id: str = Field(description="the user's id or userName")


class RightsQuery(BaseModel):
    scope: str = Field(default="instance", min_length=1)


class RightsOut(BaseModel):
    user_id: str
    user_name: str
    scope: str
    rights: list[str]


def _decision_json(decision: Decision) -> dict[str, Any]:
    out: dict[str, Any] = {"allowed": decision.allowed}
    if decision.because is not None:
        out["because"] = [chain.as_json() for chain in decision.because]
        if getattr(decision.because, "truncated", False):
            out["truncated"] = True
        if decision.access_text() is not None:  # a rule set the access type, or could not
            out["access_type"] = decision.access_json()
    return out


@bp.post("/check", responses={200: CheckAnswer},
         summary="May the user exercise the right at the scope? One check, or many (items)")
def check(body: CheckBody):  # type: ignore[no-untyped-def]
    rt = runtime()
    metrics = rt.metrics
    if body.items is not None:
        if body.user is not None or body.right is not None:
            return error_response(422, "invalidValue", "give either user and right, or items", field="items")
        items = [CheckItem(i.user, i.right, i.scope, i.interactive) for i in body.items]
        with metrics.check_seconds.time():
            decisions = authorizer(rt).check_many(items, explain=body.explain)
        results: list[dict[str, Any]] = []
        for decision in decisions:
            if isinstance(decision, Decision):
                metrics.checks.labels("true" if decision.allowed else "false").inc()
                results.append(_decision_json(decision))
            else:
                results.append({"error": {"code": decision.code, "message": decision.message,
                                          "field": decision.field}})
        return jsonify(results=results)
    for name in ("user", "right"):
        if getattr(body, name) is None:
            return error_response(422, "invalidValue", f"{name}: field required (or give items)", field=name)
    assert body.user is not None and body.right is not None
    with metrics.check_seconds.time():
        decision = authorizer(rt).check(body.user, body.right, body.scope, explain=body.explain,
                                        interactive=body.interactive)
    metrics.checks.labels("true" if decision.allowed else "false").inc()
    return jsonify(_decision_json(decision))


@bp.post("/check/scopes", responses={200: ScopesOut}, summary="In which scopes may the user exercise the right?")
def check_scopes(body: ScopesBody):  # type: ignore[no-untyped-def]
    engine = authorizer(runtime())
    answer = engine.scopes(body.user, body.right, interactive=body.interactive)
    out: dict[str, Any] = {"user_id": answer.user_id, "user_name": answer.user_name, "right": body.right,
                           "granted_at": list(answer.granted_at), "scopes": list(answer.scopes)}
    if body.explain:
        out["because"] = {node: [c.as_json() for c in engine.check(answer.user_id, body.right, node, explain=True,
                                                                    interactive=body.interactive).because or []]
                          for node in answer.granted_at}
    return jsonify(out)


@bp.post("/check/users", responses={200: UsersOut}, summary="Who may exercise the right at the scope?")
def check_users(body: UsersBody):  # type: ignore[no-untyped-def]
    engine = authorizer(runtime())
    answer = engine.users(body.right, body.scope, interactive=body.interactive, after=body.after,
                          limit=body.limit)
    users: list[dict[str, Any]] = []
    for user_id, user_name in answer.users:
        item: dict[str, Any] = {"id": user_id, "user_name": user_name}
        if body.explain:
            decision = engine.check(user_id, body.right, body.scope, explain=True, interactive=body.interactive)
            item["because"] = [chain.as_json() for chain in decision.because or []]
        users.append(item)
    return jsonify(right=body.right, scope=body.scope, users=users, next=answer.next)


@bp.get("/users/<user_id>/rights", responses={200: RightsOut}, summary="The user's effective rights at a scope")
def user_rights(path: RightsPath, query: RightsQuery):  # type: ignore[no-untyped-def]
    decision, rights = authorizer(runtime()).rights(path.user_id, query.scope)
    return jsonify(user_id=decision.user_id, user_name=decision.user_name, scope=query.scope,
                   rights=sorted(rights))
