"""Invitations: a single-use link, mailed to the user, to choose a password.

The token is 256 random bits; the store keeps its SHA-256 only (like API tokens),
so the link exists in the mail alone. A new invitation (or a resend) makes the
earlier links of the user stop working. The mail is sent last inside the unit
of work: if the SMTP server refuses it, nothing was changed.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bridge.accounts.context import AccountsContext
from bridge.accounts.credentials import set_new_password
from bridge.accounts.errors import InvitationInvalid, MailFailed
from bridge.accounts.mail import MailError
from bridge.accounts.messages import format_time, language_for, render
from bridge.services import Actor, UnitOfWork
from bridge.services.errors import InvalidValue, NotFound
from bridge.store.models import Invitation, User, UserKind

State = Literal["open", "used", "revoked", "expired"]
INVITE_PATH = "/invite"


def hash_invite_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def state(invitation: Invitation, now: datetime) -> State:
    """An invitation's state: used, revoked, expired (closed by the cleanup job or past its
    time) or open."""
    if invitation.used_at is not None:
        return "used"
    if invitation.revoked_at is not None:
        return "revoked"
    if invitation.expired_at is not None or now >= invitation.expires_at:
        return "expired"
    return "open"


def link_for(ctx: AccountsContext, token: str) -> str:
    # The token rides in the query string: access logs record the path only.
    return f"{ctx.public_url}{INVITE_PATH}?token={token}"


def issue(ctx: AccountsContext, uow: UnitOfWork, user: User) -> Invitation:
    """Create an invitation for ``user`` and mail it (last, so a refused mail undoes everything)."""
    now = ctx.now()
    token = secrets.token_urlsafe(32)
    invitation = uow.accounts.create_invitation(
        user, hash_invite_token(token), now=now, expires_at=now + timedelta(days=ctx.config.invites.valid_days))
    lang = language_for(user.preferred_language, ctx.config.invites.default_language)
    message = render("invitation", lang, user.email or "", name=user.display_name or user.user_name,
                     user_name=user.user_name, link=link_for(ctx, token),
                     expires=format_time(invitation.expires_at, lang), product=ctx.config.invites.product_name)
    uow.accounts.mark_sent(invitation, now=now)
    try:
        ctx.send(message)
    except MailError as exc:
        raise MailFailed(f"the invitation was not sent, nothing was changed: {exc}") from None
    return invitation


def resend(ctx: AccountsContext, uow: UnitOfWork, invitation_id: str) -> Invitation:
    """A fresh link for the invitation's user (the old link stops working)."""
    old = uow.accounts.get_invitation(invitation_id)
    if old.used_at is not None:
        raise InvalidValue("the invitation was used already: the user has a password "
                           "(reset it instead)", field="invitation")
    return issue(ctx, uow, uow.users.get(old.user_id))


def revoke(ctx: AccountsContext, uow: UnitOfWork, invitation_id: str) -> Invitation:
    invitation = uow.accounts.get_invitation(invitation_id)
    current = state(invitation, ctx.now())
    if current != "open":
        raise InvalidValue(f"the invitation is {current} already", field="invitation")
    uow.accounts.revoke_invitation(invitation, now=ctx.now())
    return invitation


@dataclass(frozen=True)
class NewUser:
    """A local user to create and invite (the CLI's ``invite`` and the API's)."""

    email: str
    user_name: str | None = None
    display_name: str | None = None
    preferred_language: str | None = None
    access_type: str = "backend"
    customer: str | None = None  # customer number: the user becomes one of its external users
    roles: tuple[str, ...] = ()  # "ROLE@SCOPE" (scope defaults to instance)


def parse_role(text: str) -> tuple[str, str]:
    role, _, scope = text.strip().partition("@")
    if not role:
        raise InvalidValue(f"{text!r} is not ROLE@SCOPE", field="roles")
    return role, scope or "instance"


def create_and_invite(ctx: AccountsContext, uow: UnitOfWork, new: NewUser) -> tuple[User, Invitation]:
    """Create the local user (userName = e-mail unless given), grant the roles, invite."""
    fields: dict[str, object] = {"user_name": new.user_name or new.email, "email": new.email,
                                 "display_name": new.display_name, "preferred_language": new.preferred_language,
                                 "access_type": new.access_type}
    if new.customer:
        customer = uow.customers.find(new.customer)
        if customer is None:
            raise NotFound(f"no customer with number {new.customer!r}", field="customer")
        fields.update(customer_id=customer.id, kind=UserKind.external)
    user = uow.users.create(**fields)
    for text in new.roles:
        role, scope = parse_role(text)
        uow.grants.grant(role, scope, user_id=user.id, origin="api")
    return user, issue(ctx, uow, user)


def check_token(ctx: AccountsContext, uow: UnitOfWork, token: str) -> tuple[Invitation, User]:
    """The open invitation of ``token`` and its user; InvitationInvalid says clearly why not."""
    invitation = uow.accounts.find_invitation(hash_invite_token(token)) if token else None
    if invitation is None:
        raise InvitationInvalid("unknown", "this invitation link is not valid: check that the whole link "
                                           "was copied, or ask for a new invitation")
    current = state(invitation, ctx.now())
    if current == "used":
        raise InvitationInvalid(current, "this invitation link was used already: log in with your password, "
                                         "or ask an administrator to reset it")
    if current == "revoked":
        raise InvitationInvalid(current, "this invitation link was withdrawn: use the newest invitation mail, "
                                         "or ask for a new one")
    if current == "expired":
        raise InvitationInvalid(current, "this invitation link has expired: ask an administrator "
                                         "for a new invitation")
    user = uow.users.get(invitation.user_id)
    if not user.active:
        raise InvitationInvalid("revoked", "this account is deactivated: ask an administrator")
    return invitation, user


def accept(ctx: AccountsContext, token: str, password: str, actor_channel: str = "invite") -> User:
    """The user chooses a password through the link: the link is spent, the password set."""
    with ctx.services.unit(Actor(name="invitee", channel=actor_channel)) as uow:
        invitation, user = check_token(ctx, uow, token)
        set_new_password(ctx, uow, user, password)
        uow.accounts.use_invitation(invitation, now=ctx.now())
        return user
