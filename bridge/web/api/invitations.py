"""/api/v1/invitations: invite users (new or existing) by mail, resend, revoke, list."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import jsonify
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import func, select

from bridge.accounts import invitations
from bridge.accounts.context import context_for
from bridge.store.models import Invitation
from bridge.web import runtime
from bridge.web.api.common import ErrorBody, Page, PageQuery, api_actor, make_blueprint

bp = make_blueprint("api_invitations", __name__, "invitations", "Invitation mails with a single-use link")

StateName = Literal["open", "used", "revoked", "expired"]


class InvitationOut(BaseModel):
    id: str
    user_id: str
    state: StateName
    created_by: str | None
    created_at: datetime
    expires_at: datetime
    sent_at: datetime | None
    used_at: datetime | None
    revoked_at: datetime | None


class InvitationCreate(BaseModel):
    """Either ``user_id`` (invite an existing user) or ``email`` (create a local user, then invite)."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = None
    email: str | None = Field(default=None, max_length=320)
    user_name: str | None = Field(default=None, max_length=256, description="default: the e-mail address")
    display_name: str | None = None
    preferred_language: str | None = Field(default=None, description="de or en pick the mail's language")
    access_type: Literal["admin", "backend", "api"] = "backend"
    customer: str | None = Field(default=None, description="customer number: an external user of it")
    roles: list[str] = Field(default_factory=list, description="ROLE@SCOPE (scope defaults to instance)")

    @model_validator(mode="after")
    def _one_target(self) -> InvitationCreate:
        if (self.user_id is None) == (self.email is None):
            raise ValueError("give user_id (an existing user) or email (a new user), not both")
        if self.user_id is not None and (self.user_name or self.customer or self.roles):
            raise ValueError("user_name, customer and roles are for a new user (email)")
        return self


class InvitationQuery(PageQuery):
    user_id: str | None = None
    state: StateName | None = None


class InvitationPath(BaseModel):
    invitation_id: str


class InvitationPage(Page[InvitationOut]):
    pass


def invitation_json(invitation: Invitation, now: datetime) -> dict[str, Any]:
    return InvitationOut(
        id=invitation.id, user_id=invitation.user_id, state=invitations.state(invitation, now),
        created_by=invitation.created_by, created_at=invitation.created_at, expires_at=invitation.expires_at,
        sent_at=invitation.sent_at, used_at=invitation.used_at, revoked_at=invitation.revoked_at,
    ).model_dump(mode="json")


@bp.post("/invitations", responses={201: InvitationOut, 502: ErrorBody},
         summary="Invite a user: mail a single-use link to set a password")
def create_invitation(body: InvitationCreate):  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    with ctx.services.unit(api_actor()) as uow:
        if body.user_id is not None:
            invitation = invitations.issue(ctx, uow, uow.users.get(body.user_id))
        else:
            assert body.email is not None
            new = invitations.NewUser(email=body.email, user_name=body.user_name, display_name=body.display_name,
                                      preferred_language=body.preferred_language, access_type=body.access_type,
                                      customer=body.customer, roles=tuple(body.roles))
            _, invitation = invitations.create_and_invite(ctx, uow, new)
        out = invitation_json(invitation, ctx.now())
    return jsonify(out), 201


@bp.get("/invitations", responses={200: InvitationPage}, summary="List invitations")
def list_invitations(query: InvitationQuery):  # type: ignore[no-untyped-def]
    now = context_for(runtime()).now()
    stmt = select(Invitation)
    if query.user_id:
        stmt = stmt.where(Invitation.user_id == query.user_id)
    with runtime().store.read() as session:
        rows = [invitation_json(i, now) for i in session.scalars(stmt.order_by(Invitation.created_at.desc(),
                                                                                 Invitation.id))]
        if query.state:
            rows = [r for r in rows if r["state"] == query.state]
        total = len(rows) if query.state else session.scalar(select(func.count()).select_from(stmt.subquery()))
    return jsonify(total=total, offset=query.offset, limit=query.limit,
                   items=rows[query.offset:query.offset + query.limit])


@bp.post("/invitations/<invitation_id>/resend", responses={201: InvitationOut, 502: ErrorBody},
         summary="Mail a fresh link (the old one stops working)")
def resend_invitation(path: InvitationPath):  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    with ctx.services.unit(api_actor()) as uow:
        out = invitation_json(invitations.resend(ctx, uow, path.invitation_id), ctx.now())
    return jsonify(out), 201


@bp.post("/invitations/<invitation_id>/revoke", responses={200: InvitationOut}, summary="Revoke an invitation")
def revoke_invitation(path: InvitationPath):  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    with ctx.services.unit(api_actor()) as uow:
        out = invitation_json(invitations.revoke(ctx, uow, path.invitation_id), ctx.now())
    return jsonify(out)
