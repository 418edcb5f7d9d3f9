"""The account pages' verbs for portals with their own UI (bridge.accounts.selfservice):
a forgotten password, its link, the user's own profile and a new e-mail address.

The portal calls with its admin API token, on behalf of a user it has logged in
(``POST /api/v1/auth/login``); these verbs are limited to what users may do for
themselves, whatever the token could do otherwise. The user's own password change is
``POST /api/v1/auth/password``; own TOTP enrolment is ``/api/v1/users/{id}/totp``.
"""

from __future__ import annotations

from flask import g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.accounts import selfservice
from bridge.accounts.context import context_for
from bridge.services import Actor
from bridge.web import runtime
from bridge.web.api.auth import client_address
from bridge.web.api.common import ErrorBody, make_blueprint
from bridge.web.api.users import UserOut, user_json

bp = make_blueprint("api_selfservice", __name__, "self-service",
                    "What users do for themselves: forgotten password, profile, e-mail address")

CHANNEL = "admin-api"


class ResetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login: str = Field(min_length=1, max_length=320, description="the user name or e-mail address the user typed")
    client_ip: str | None = Field(default=None, max_length=64, description="the end user's IP address")

    _address = field_validator("client_ip")(client_address)


class Accepted(BaseModel):
    message: str


class ResetConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=256, description="the token of the link in the mail")
    new_password: str = Field(min_length=1, max_length=4096)


class UserPath(BaseModel):
    user_id: str


class ProfileChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    given_name: str | None = Field(default=None, max_length=128)
    family_name: str | None = Field(default=None, max_length=128)
    display_name: str | None = Field(default=None, max_length=256)
    preferred_language: str | None = Field(default=None, max_length=35, description="BCP 47, like de or en-US")
    timezone: str | None = Field(default=None, max_length=64, description="IANA, like Europe/Berlin")


class EmailChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)


class EmailChangeOut(BaseModel):
    sent_to: str
    expires_at: str


class LinkToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=256)


def _user_actor(name: str) -> Actor:
    return Actor(name=f"user:{name}", channel=CHANNEL, request_id=g.get("request_id"))


@bp.post("/account/password-reset", responses={202: Accepted, 403: ErrorBody, 429: ErrorBody},
         summary="Mail a password-reset link to the user a name or address names (the same answer either way)")
def reset_request(body: ResetRequest):  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    selfservice.request_password_reset(ctx, body.login, body.client_ip or request.remote_addr,
                                       Actor(name=f"api:{g.api_client}", channel=CHANNEL,
                                             request_id=g.get("request_id")))
    minutes = ctx.config.self_service.reset_minutes
    return jsonify(message=f"if the name or address belongs to an account, a link is on its way; it works for "
                           f"{minutes} minutes"), 202


@bp.post("/account/password-reset/confirm", responses={200: UserOut, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody,
                                                      410: ErrorBody, 503: ErrorBody},
         summary="Set the new password a reset link was for (the link is spent)")
def reset_confirm(body: ResetConfirm):  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    user = selfservice.complete_password_reset(ctx, body.token, body.new_password, CHANNEL)
    with ctx.services.unit(_user_actor(user.user_name)) as uow:
        return jsonify(user_json(uow.users.get(user.id)))


@bp.patch("/users/<user_id>/profile", responses={200: UserOut, 409: ErrorBody},
          summary="The user's own names, language and time zone (a local user's; another source owns the rest's)")
def profile(path: UserPath, body: ProfileChange):  # type: ignore[no-untyped-def]
    changes = body.model_dump(exclude_unset=True)
    ctx = context_for(runtime())
    with ctx.services.unit(Actor(name=f"api:{g.api_client}", channel=CHANNEL,
                                 request_id=g.get("request_id"))) as uow:
        user = selfservice.update_profile(ctx, uow, uow.users.by_ref(path.user_id), changes)
        return jsonify(user_json(user))


@bp.post("/users/<user_id>/email-change", responses={202: EmailChangeOut, 409: ErrorBody, 429: ErrorBody,
                                                     502: ErrorBody},
         summary="Mail a confirmation link to a new address; the address changes when the link is used")
def email_change(path: UserPath, body: EmailChange):  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    actor = Actor(name=f"api:{g.api_client}", channel=CHANNEL, request_id=g.get("request_id"))
    asked = selfservice.request_email_change(ctx, path.user_id, body.email, actor)
    return jsonify(sent_to=asked.new_email, expires_at=asked.expires_at.isoformat()), 202


@bp.post("/account/email-change/confirm", responses={200: UserOut, 404: ErrorBody, 410: ErrorBody},
         summary="Use the link sent to the new address: the address changes, the link is spent")
def email_confirm(body: LinkToken):  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    user = selfservice.confirm_email_change(ctx, body.token, CHANNEL)
    with ctx.services.unit(_user_actor(user.user_name)) as uow:
        return jsonify(user_json(uow.users.get(user.id)))
