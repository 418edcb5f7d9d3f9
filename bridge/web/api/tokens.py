"""/api/v1/tokens: the bearer tokens of SCIM clients and admin API clients.

The plain token appears once, in the answer to its creation (``Cache-Control:
no-store``); the store keeps its SHA-256 and lists show only the public prefix.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import g, jsonify
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from bridge.services.errors import Conflict
from bridge.store.models import ApiToken
from bridge.web import runtime
from bridge.web.api.common import Page, PageQuery, api_actor, make_blueprint, page_of
from bridge.web.api.headers import NO_STORE, model_headers, no_store

bp = make_blueprint("api_tokens", __name__, "tokens", "Bearer tokens of SCIM clients and admin API clients")

KindName = Literal["scim", "admin"]


class TokenOut(BaseModel):
    id: str
    name: str
    kind: KindName = Field(description="scim: may call /scim/v2 only; admin: may call /api/v1 only")
    prefix: str = Field(description="the public part: a token reads dbr_PREFIX_SECRET")
    created_at: datetime
    last_used_at: datetime | None = Field(description="to the minute")
    revoked_at: datetime | None
    active: bool = Field(description="not revoked")


class TokenCreated(TokenOut):
    model_config = model_headers(no_store())  # every answer holding a token: no-store

    token: str = Field(description="the token itself: shown this once, store it now")


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="unique, also after revocation")
    kind: KindName


class TokenQuery(PageQuery):
    kind: KindName | None = None
    active: bool | None = Field(default=None, description="true: not revoked; false: revoked")


class TokenPath(BaseModel):
    name: str


class TokenPage(Page[TokenOut]):
    pass


def token_json(token: ApiToken) -> dict[str, Any]:
    return TokenOut(id=token.id, name=token.name, kind=token.kind.value, prefix=token.prefix,
                    created_at=token.created_at, last_used_at=token.last_used_at, revoked_at=token.revoked_at,
                    active=token.revoked_at is None).model_dump(mode="json")


def _not_the_caller(name: str, verb: str) -> None:
    """Locking oneself out by a typo (or a fuzzer) helps nobody: use another admin token or the CLI."""
    if name == g.get("api_client"):
        raise Conflict(f"token {name!r} is the one making this request: {verb} it with another admin token "
                       f"or 'dirbridge token {verb}'", field="name")


@bp.get("/tokens", responses={200: TokenPage}, summary="List tokens (never their secrets)")
def list_tokens(query: TokenQuery):  # type: ignore[no-untyped-def]
    stmt = select(ApiToken)
    if query.kind:
        stmt = stmt.where(ApiToken.kind == query.kind)
    if query.active is not None:
        stmt = stmt.where(ApiToken.revoked_at.is_(None) if query.active else ApiToken.revoked_at.is_not(None))
    return page_of(stmt, [ApiToken.name], query, token_json)


@bp.post("/tokens", responses={201: TokenCreated}, summary="Create a token; the answer holds it, once")
def create_token(body: TokenCreate):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        token, plain = uow.tokens.create(body.name, body.kind)
        out = {**token_json(token), "token": plain}
    response = jsonify(out)
    response.headers["Cache-Control"] = NO_STORE
    return response, 201


@bp.get("/tokens/<name>", responses={200: TokenOut}, summary="One token")
def get_token(path: TokenPath):  # type: ignore[no-untyped-def]
    with runtime().services.read(api_actor()) as uow:
        return jsonify(token_json(uow.tokens.get(path.name)))


@bp.post("/tokens/<name>/revoke", responses={200: TokenOut},
         summary="Revoke a token: refused from the next request on (revoking twice changes nothing; "
                 "a token cannot revoke itself)")
def revoke_token(path: TokenPath):  # type: ignore[no-untyped-def]
    _not_the_caller(path.name, "revoke")
    with runtime().services.unit(api_actor()) as uow:
        out = token_json(uow.tokens.revoke(path.name))
    return jsonify(out)


@bp.post("/tokens/<name>/rotate", responses={200: TokenCreated},
         summary="A new secret under the same name (the source stays); the old token is refused from now "
                 "on; the answer holds the new one, once (a token cannot rotate itself)")
def rotate_token(path: TokenPath):  # type: ignore[no-untyped-def]
    _not_the_caller(path.name, "rotate")
    with runtime().services.unit(api_actor()) as uow:
        token, plain = uow.tokens.rotate(path.name)
        out = {**token_json(token), "token": plain}
    response = jsonify(out)
    response.headers["Cache-Control"] = NO_STORE
    return response
