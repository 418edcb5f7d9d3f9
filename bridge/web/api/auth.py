"""/api/v1/auth: the portal verifies its users' logins and password changes here.

The portal calls with its admin API token and passes the end user's address in
``client_ip`` (else the caller's address counts), so that the per-IP lockout and
the allow-list see the user, not the portal.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from flask import g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.accounts.context import context_for
from bridge.accounts.login import LoginOutcome, login
from bridge.accounts.selfservice import change_password
from bridge.services import Actor
from bridge.store.models import User
from bridge.web import runtime
from bridge.web.api.common import ErrorBody, api_actor, error_response, make_blueprint
from bridge.web.api.headers import BASIC_CHALLENGE
from bridge.web.api.users import UserOut, user_json

bp = make_blueprint("api_auth", __name__, "auth", "Login verification for the portal")


def client_address(value: str | None) -> str | None:
    """An IP address in its one canonical form (``10.0.0.1 `` and ``::ffff:10.0.0.1`` are
    ``10.0.0.1``; IPv6 compressed and lower-case), so that the per-IP lockout counts one
    address once and an unlock lifts what was locked; anything else is refused."""
    if value is None:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"{value[:64]!r} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        address = ipaddress.IPv6Address(str(address).split("%", 1)[0])  # a zone id names no other host
    return str(address)


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=256)
    password: str = Field(max_length=4096)
    totp: str | None = Field(default=None, max_length=64, description="a TOTP code or a recovery code")
    client_ip: str | None = Field(default=None, max_length=64, description="the end user's IP address")

    _address = field_validator("client_ip")(client_address)


class RoleAt(BaseModel):
    role: str
    scope: str


class LoginOk(BaseModel):
    user: UserOut
    roles: list[RoleAt]
    password_change_required: bool = Field(description="the password is temporary: the portal must ask for a "
                                                        "new one (POST /api/v1/auth/password)")
    totp_enrolment_required: bool = Field(description="policy requires TOTP and the user has none yet")
    recovery_codes_left: int | None = Field(default=None, description="set when a recovery code was used")


class PasswordChangeBody(LoginBody):
    new_password: str = Field(min_length=1, max_length=4096)


class IpUnlockBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_ip: str = Field(min_length=1, max_length=64)

    _address = field_validator("client_ip")(client_address)


def roles_of(user_id: str) -> list[dict[str, str]]:
    """The roles the user holds (own grants, groups', mapping rules'), with their scopes."""
    from bridge.mapping.engine import authorizer

    cache = authorizer(runtime()).cache
    cache.sync()
    found = cache.entry(user_id)
    if found is None:
        return []
    model, entry = found
    holdings = list(entry.info.holdings) + [h for group in entry.groups for h in group.holdings]
    pairs = sorted({(model.role_names.get(h.role_id, h.role_id), h.scope_id) for h in holdings})
    return [{"role": role, "scope": scope} for role, scope in pairs]


def _attempt(body: LoginBody) -> LoginOutcome:
    return login(context_for(runtime()), body.username, body.password, body.totp,
                 body.client_ip or request.remote_addr, actor=f"api:{g.api_client}",
                 request_id=g.get("request_id"))


def _refused(outcome: LoginOutcome) -> Any:
    response, status = error_response(outcome.status, outcome.code, outcome.message)
    payload: dict[str, Any] = response.get_json()
    if outcome.locked_until is not None:
        payload["locked_until"] = outcome.locked_until.isoformat()
    payload.update(outcome.flags)
    response = jsonify(payload)
    if status == 401:
        response.headers["WWW-Authenticate"] = BASIC_CHALLENGE
    return response, status


def _success(outcome: LoginOutcome) -> dict[str, Any]:
    assert outcome.user_id is not None
    with runtime().services.unit(api_actor()) as uow:
        user = user_json(uow.users.get(outcome.user_id))
    return {"user": user, "roles": roles_of(outcome.user_id),
            "password_change_required": outcome.password_change_required,
            "totp_enrolment_required": outcome.totp_enrolment_required,
            "recovery_codes_left": outcome.recovery_codes_left}


@bp.post("/auth/login", responses={200: LoginOk, 401: ErrorBody, 403: ErrorBody, 423: ErrorBody, 503: ErrorBody},
         summary="Verify a user's login (password, then TOTP when enrolled)")
def auth_login(body: LoginBody):  # type: ignore[no-untyped-def]
    outcome = _attempt(body)
    runtime().metrics.logins.labels("ok" if outcome.ok else outcome.code).inc()
    if not outcome.ok:
        return _refused(outcome)
    return jsonify(_success(outcome))


@bp.post("/auth/password", responses={200: LoginOk, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 423: ErrorBody,
                                      503: ErrorBody},
         summary="Change a password: the current credentials, then the new password (policy and history)")
def auth_change_password(body: PasswordChangeBody):  # type: ignore[no-untyped-def]
    outcome = _attempt(body)
    if not outcome.ok:
        return _refused(outcome)
    assert outcome.user_id is not None
    ctx = context_for(runtime())
    with ctx.services.store.read() as db:
        user = db.get(User, outcome.user_id)
        assert user is not None
        db.expunge(user)
    # a local user's by the policy and history; a directory user's in the directory, as that user
    change_password(ctx, user, body.password, body.new_password,
                    Actor(name=f"user:{body.username}", channel="admin-api", request_id=g.get("request_id")))
    result = _success(outcome)
    result["password_change_required"] = False
    return jsonify(result)


@bp.post("/auth/ip-unlock", responses={204: None}, summary="Lift the lockout of a client address")
def auth_ip_unlock(body: IpUnlockBody):  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    with ctx.services.unit(api_actor()) as uow:
        uow.accounts.unlock_ip(body.client_ip, now=ctx.now())
    return "", 204
