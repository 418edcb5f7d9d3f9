"""Admin verbs on accounts: password reset, unlock, TOTP enrolment, and bulk role
assignment and deactivation (all or nothing)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import jsonify
from pydantic import BaseModel, ConfigDict, Field

from bridge.accounts import enrolment
from bridge.accounts.context import context_for
from bridge.accounts.credentials import reset_to_temporary
from bridge.accounts.invitations import parse_role
from bridge.services import ServiceError, UnitOfWork
from bridge.services.errors import InvalidValue, NotFound
from bridge.store.models import User
from bridge.web import runtime
from bridge.web.api.common import api_actor, make_blueprint
from bridge.web.api.headers import NO_STORE, model_headers, no_store
from bridge.web.api.users import UserOut, user_json

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


class BulkUsers(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: list[str] = Field(min_length=1, max_length=10000, description="user ids or userNames")


class BulkRoles(BulkUsers):
    roles: list[str] = Field(min_length=1, description="ROLE@SCOPE (scope defaults to instance)")


class BulkResult(BaseModel):
    changed: int
    unchanged: int


@contextmanager
def naming(ref: str) -> Iterator[None]:
    """Errors of a bulk change name the entry that failed (and the whole change is undone)."""
    try:
        yield
    except ServiceError as exc:
        exc.message = f"{ref}: {exc.message} (nothing was changed)"
        raise


def find_user(uow: UnitOfWork, ref: str) -> User:
    return uow.users.by_ref(ref, field="users")


@bp.post("/users/<user_id>/password-reset", responses={200: TemporaryPassword},
         summary="Reset to a temporary password that must be changed at the first login")
def password_reset(path: UserPath):  # type: ignore[no-untyped-def]
    ctx = context_for(runtime())
    with ctx.services.unit(api_actor()) as uow:
        temporary = reset_to_temporary(ctx, uow, uow.users.by_ref(path.user_id))
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


@bp.post("/users/bulk/roles", responses={200: BulkResult}, summary="Grant roles to many users (all or nothing)")
def bulk_roles(body: BulkRoles):  # type: ignore[no-untyped-def]
    roles = [parse_role(text) for text in body.roles]
    changed = unchanged = 0
    with runtime().services.unit(api_actor()) as uow:
        for ref in dict.fromkeys(body.users):
            with naming(ref):
                user = find_user(uow, ref)
                created = [uow.grants.grant(role, scope, user_id=user.id, origin="api")[1] for role, scope in roles]
            changed, unchanged = (changed + 1, unchanged) if any(created) else (changed, unchanged + 1)
    return jsonify(changed=changed, unchanged=unchanged)


@bp.post("/users/bulk/deactivate", responses={200: BulkResult},
         summary="Deactivate many users (all or nothing: the last admin stays)")
def bulk_deactivate(body: BulkUsers):  # type: ignore[no-untyped-def]
    changed = unchanged = 0
    with runtime().services.unit(api_actor()) as uow:
        for ref in dict.fromkeys(body.users):
            with naming(ref):
                user = find_user(uow, ref)
                if not user.active:
                    unchanged += 1
                    continue
                uow.users.deactivate(user)
            changed += 1
    if changed + unchanged == 0:
        raise InvalidValue("no users given", field="users")
    return jsonify(changed=changed, unchanged=unchanged)
