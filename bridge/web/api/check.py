"""POST /api/v1/check and GET /api/v1/users/{id}/rights: the portal's hot path.

Answered from the process's authorizer (bridge.mapping.engine), which reads one
counter row per request and otherwise works from memory.
"""

from __future__ import annotations

from typing import Any, Literal

from flask import jsonify
from pydantic import BaseModel, ConfigDict, Field

from bridge.mapping.engine import authorizer
from bridge.web import runtime
from bridge.web.api.common import make_blueprint

bp = make_blueprint("api_check", __name__, "check", "May this user do that here, and why")


class CheckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, description="the user's id or userName")
    right: str = Field(min_length=1, max_length=128)
    scope: str = Field(default="instance", min_length=1, description="TYPE:NAME, or instance")
    explain: bool = Field(default=False, description="also return every chain that grants the right")
    interactive: bool = Field(default=False, description="an interactive session: API users may nothing")


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
    because: list[ChainOut] | None = Field(default=None, description="with explain: every granting chain")
    access_type: AccessTypeOut | None = Field(default=None, description="with explain, when an access-type "
                                              "mapping rule set the access type or could not: which, or why")


class RightsPath(BaseModel):
    user_id: str = Field(description="the user's id or userName")


class RightsQuery(BaseModel):
    scope: str = Field(default="instance", min_length=1)


class RightsOut(BaseModel):
    user_id: str
    user_name: str
    scope: str
    rights: list[str]


@bp.post("/check", responses={200: CheckOut}, summary="May the user exercise the right at the scope?")
def check(body: CheckBody):  # type: ignore[no-untyped-def]
    metrics = runtime().metrics
    with metrics.check_seconds.time():
        decision = authorizer(runtime()).check(body.user, body.right, body.scope, explain=body.explain,
                                               interactive=body.interactive)
    metrics.checks.labels("true" if decision.allowed else "false").inc()
    out: dict[str, Any] = {"allowed": decision.allowed}
    if decision.because is not None:
        out["because"] = [chain.as_json() for chain in decision.because]
        if decision.access_text() is not None:  # a rule set the access type, or could not
            out["access_type"] = decision.access_json()
    return jsonify(out)


@bp.get("/users/<user_id>/rights", responses={200: RightsOut}, summary="The user's effective rights at a scope")
def user_rights(path: RightsPath, query: RightsQuery):  # type: ignore[no-untyped-def]
    decision, rights = authorizer(runtime()).rights(path.user_id, query.scope)
    return jsonify(user_id=decision.user_id, user_name=decision.user_name, scope=query.scope,
                   rights=sorted(rights))
