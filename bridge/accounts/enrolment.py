"""TOTP enrolment flows on the store: start (secret, URI, QR), confirm with a first
code (which hands out the recovery codes, once), reset by an admin."""

from __future__ import annotations

from bridge.accounts import totp
from bridge.accounts.context import AccountsContext
from bridge.accounts.errors import TotpInvalid
from bridge.services import UnitOfWork
from bridge.services.errors import Conflict
from bridge.store.models import User


def start(ctx: AccountsContext, uow: UnitOfWork, user: User) -> totp.Enrolment:
    secret = totp.new_secret()
    uow.accounts.start_totp(user, ctx.vault.seal(secret), now=ctx.now())
    uri = totp.provisioning_uri(secret, user.user_name, ctx.config.policy.totp.issuer)
    return totp.Enrolment(secret=secret, uri=uri, qr_svg=totp.qr_svg(uri))


def confirm(ctx: AccountsContext, uow: UnitOfWork, user: User, code: str) -> list[str]:
    """Confirm the pending enrolment with a first code; returns the recovery codes (shown once)."""
    credential = uow.accounts.totp_credential(user)
    if credential is None:
        raise Conflict(f"{user.user_name!r} has no TOTP enrolment to confirm: start one first", field="totp")
    if credential.confirmed_at is not None:
        raise Conflict(f"{user.user_name!r} has confirmed TOTP already", field="totp")
    counter = totp.matching_counter(ctx.vault.open(credential.secret), code, ctx.now(), credential.last_counter)
    if counter is None:
        raise TotpInvalid("the code does not match: check the device's clock and type the current code",
                          field="code")
    codes = totp.new_recovery_codes()
    uow.accounts.confirm_totp(user, credential, counter, [totp.hash_recovery_code(c) for c in codes],
                              now=ctx.now())
    return codes


def new_recovery_codes(uow: UnitOfWork, user: User) -> list[str]:
    """A fresh set of recovery codes; the old ones stop working."""
    credential = uow.accounts.totp_credential(user)
    if credential is None or credential.confirmed_at is None:
        raise Conflict(f"{user.user_name!r} has no confirmed TOTP", field="totp")
    codes = totp.new_recovery_codes()
    uow.accounts.replace_recovery_codes(user, [totp.hash_recovery_code(c) for c in codes])
    return codes


def enrolled(uow: UnitOfWork, user: User) -> bool:
    credential = uow.accounts.totp_credential(user)
    return credential is not None and credential.confirmed_at is not None


def required(ctx: AccountsContext, user: User) -> bool:
    """Whether the policy requires TOTP of this user (admins, when configured)."""
    return ctx.config.policy.totp.required_for_admins and user.access_type.value == "admin"
