"""Admin verbs on accounts: password reset, an imported password hash, unlock, TOTP
enrolment, and bulk changes (roles granted or revoked, deactivation, deletion; all or
nothing, bridge.services.bulk)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, jsonify
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.accounts import enrolment
from bridge.accounts.context import context_for
from bridge.accounts.invitations import parse_role
from bridge.accounts.selfservice import reset_by_admin
from bridge.services import UnitOfWork, bulk
from bridge.services.errors import InvalidValue, NotFound
from bridge.store.models import User
from bridge.web import runtime
from bridge.web.api.common import api_actor, make_blueprint
from bridge.web.api.headers import NO_STORE, model_headers, no_store
from bridge.web.api.users import UserOut, holds_role, user_json

bp = make_blueprint("api_accounts", __name__, "accounts", "Passwords, locks, TOTP and bulk changes of users")


class UserPath(BaseModel):
    user_id: str


class TemporaryPassword(BaseModel):
    model_config = model_headers(no_store())  # a secret, shown once

    temporary_password: str = Field(description="shown once; the user must change it at the first login")


class UnlockOut(BaseModel):
    unlocked: bool = Field(description="false: the account was not locked (the failure count starts afresh anyway)")
    user: UserOut


class TotpEnrolmentOut(BaseModel):
    model_config = model_headers(no_store())  # a secret, shown once

    secret: str
    otpauth_uri: str
    qr_svg: str


class TotpConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=6, max_length=16)


class RecoveryCodesOut(BaseModel):
    model_config = model_headers(no_store())  # a secret, shown once

    recovery_codes: list[str] = Field(description="shown once; each works once")


class BulkSelection(BaseModel):
    """Exactly one of: the users by id or userName, the holders of a role, a search."""

    model_config = ConfigDict(extra="forbid")

    users: list[str] | None = Field(default=None, min_length=1, max_length=10000,
                                    description="user ids or userNames")
    role: str | None = Field(default=None, min_length=1, description="every user holding this role (at any scope, "
                                                                     "by a grant, a group or a group rule)")
    q: str | None = Field(default=None, min_length=1, description="every user the search finds (as GET /users?q=)")

    @model_validator(mode="after")
    def _one(self) -> BulkSelection:
        if sum(x is not None for x in (self.users, self.role, self.q)) != 1:
            raise ValueError("give exactly one of users, role or q")
        return self


class BulkRoles(BulkSelection):
    roles: list[str] = Field(min_length=1, description="ROLE@SCOPE (scope defaults to instance)")


class ConfirmQuery(BaseModel):
    confirm: bool = Field(default=False, description="true: yes, delete them for good")


class BulkResult(BaseModel):
    changed: int
    unchanged: int


def find_user(uow: UnitOfWork, ref: str) -> User:
    return uow.users.by_ref(ref, field="users")


class PasswordHashIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password_hash: str = Field(min_length=8, max_length=1024, description="a hash exported from another system: "
                               "argon2, bcrypt ($2b$), PBKDF2 (Django's or passlib's form), {SSHA}, {SSHA256}, "
                               "{SSHA512}")


class PasswordHashOut(BaseModel):
    scheme: str = Field(description="the scheme found; the first successful login replaces it with argon2id")


@bp.put("/users/<user_id>/password-hash", responses={200: PasswordHashOut},
        summary="Keep a user's password from another system by its hash (migration)")
def import_password_hash(path: UserPath, body: PasswordHashIn):  # type: ignore[no-untyped-def]
    from bridge.accounts.credentials import import_password_hash as keep_hash

    with runtime().services.unit(api_actor()) as uow:
        scheme = keep_hash(uow, uow.users.by_ref(path.user_id), body.password_hash)
    return jsonify(scheme=scheme)


@bp.post("/users/<user_id>/password-reset", responses={200: TemporaryPassword},
         summary="Reset to a temporary password (a local user must change it at the first login; a "
                 "directory user's is set in the directory when its source allows resets)")
def password_reset(path: UserPath):  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    with ctx.services.unit(api_actor()) as uow:
        temporary = reset_by_admin(ctx, uow, uow.users.by_ref(path.user_id))
    response = jsonify(temporary_password=temporary)
    response.headers["Cache-Control"] = NO_STORE
    return response


@bp.post("/users/<user_id>/unlock", responses={200: UnlockOut}, summary="Lift a login lock early")
def unlock(path: UserPath):  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    with ctx.services.unit(api_actor()) as uow:
        user = uow.users.by_ref(path.user_id)
        unlocked = uow.accounts.unlock(user, now=ctx.now())
        out = user_json(user)
    return jsonify(unlocked=unlocked, user=out)


@bp.post("/users/<user_id>/totp", responses={201: TotpEnrolmentOut},
         summary="Start a TOTP enrolment: secret, otpauth URI and QR code (SVG)")
def totp_enrol(path: UserPath):  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    with ctx.services.unit(api_actor()) as uow:
        started = enrolment.start(ctx, uow, uow.users.by_ref(path.user_id))
    response = jsonify(secret=started.secret, otpauth_uri=started.uri, qr_svg=started.qr_svg)
    response.headers["Cache-Control"] = NO_STORE
    return response, 201


@bp.post("/users/<user_id>/totp/confirm", responses={200: RecoveryCodesOut},
         summary="Confirm the enrolment with a first code; answers the recovery codes once")
def totp_confirm(path: UserPath, body: TotpConfirm):  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    with ctx.services.unit(api_actor()) as uow:
        codes = enrolment.confirm(ctx, uow, uow.users.by_ref(path.user_id), body.code)
    response = jsonify(recovery_codes=codes)
    response.headers["Cache-Control"] = NO_STORE
    return response


@bp.post("/users/<user_id>/totp/recovery-codes", responses={200: RecoveryCodesOut},
         summary="A new set of recovery codes (the old ones stop working)")
def totp_recovery_codes(path: UserPath):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        codes = enrolment.new_recovery_codes(uow, uow.users.by_ref(path.user_id))
    response = jsonify(recovery_codes=codes)
    response.headers["Cache-Control"] = NO_STORE
    return response


@bp.delete("/users/<user_id>/totp", responses={204: None}, summary="Reset TOTP (the user enrols again)")
def totp_reset(path: UserPath):  # type: ignore[no-untyped-def]
    with runtime().services.unit(api_actor()) as uow:
        if not uow.accounts.reset_totp(uow.users.by_ref(path.user_id)):
            raise NotFound("the user has no TOTP enrolment", field="totp")
    return "", 204


def _bulk(body: BulkSelection, change: Callable[[UnitOfWork, list[tuple[str, User]]], bulk.Outcome]) -> Response:
    """One bulk change in one unit, on the users the body names or selects (by role, by a
    search), answered with its counts."""
    with runtime().services.unit(api_actor()) as uow:
        where = (holds_role(body.role) if body.role is not None
                 else bulk.searched(body.q) if body.q is not None else None)
        outcome = change(uow, bulk.selected(uow, body.users, where))
    return jsonify(changed=outcome.changed, unchanged=outcome.unchanged)


@bp.post("/users/bulk/roles", responses={200: BulkResult},
         summary="Grant roles to many users, named or selected (all or nothing)")
def bulk_roles(body: BulkRoles):  # type: ignore[no-untyped-def]
    roles = [parse_role(text) for text in body.roles]
    return _bulk(body, lambda uow, users: bulk.grant_roles(uow, users, roles))


@bp.post("/users/bulk/roles/revoke", responses={200: BulkResult},
         summary="Take roles from many users, named or selected (all or nothing; their own grants)")
def bulk_revoke(body: BulkRoles):  # type: ignore[no-untyped-def]
    roles = [parse_role(text) for text in body.roles]
    return _bulk(body, lambda uow, users: bulk.revoke_roles(uow, users, roles))


@bp.post("/users/bulk/deactivate", responses={200: BulkResult},
         summary="Deactivate many users, named or selected (all or nothing: the last admin stays)")
def bulk_deactivate(body: BulkSelection):  # type: ignore[no-untyped-def]
    return _bulk(body, bulk.deactivate)


@bp.post("/users/bulk/delete", responses={200: BulkResult},
         summary="Delete many users for good, named or selected (all or nothing; needs confirm=true)")
def bulk_delete(body: BulkSelection, query: ConfirmQuery):  # type: ignore[no-untyped-def]
    if not query.confirm:
        raise InvalidValue("deleting users cannot be undone: add ?confirm=true", field="confirm")
    return _bulk(body, bulk.delete)
