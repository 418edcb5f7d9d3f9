"""What users do for themselves: a forgotten password (a single-use link by mail), a
new password (the current one first), their profile, and a new e-mail address
(confirmed by a link sent to it). The account pages (bridge.web.account) and the
portal API (bridge.web.api.selfservice) both call these, so the rules are the same.

Rules callers rely on:

- a reset request gets the same answer whether the name or address exists or not,
  and counts the same towards the limits (per typed name or address, per client IP);
  the mail goes out from the outbox after the answer, so a known address does not
  answer slower;
- a link is 256 random bits whose SHA-256 alone is stored; it works once, within its
  time, and a newer link of the same purpose (or the password it was for) ends it;
- a directory user's password is changed or reset in the directory
  (bridge.ldap.passwords); a source that does not allow it gets a mail saying whom to
  ask instead, never a link that cannot work;
- the profile and the e-mail address of a user another source owns (an IdP, a
  directory) stay that source's: the user is told where to change them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from bridge.accounts.context import AccountsContext
from bridge.accounts.credentials import reset_to_temporary, set_new_password
from bridge.accounts.errors import LinkInvalid, SelfServiceOff, TooManyRequests
from bridge.accounts.mail import MailError, Message
from bridge.accounts.messages import format_time, language_for, render
from bridge.accounts.passwords import temporary_password
from bridge.names import MAX_KEY_LENGTH
from bridge.services import Actor, UnitOfWork
from bridge.services.accounts import EMAIL_LINK, RESET_LINK, is_directory_user
from bridge.services.actor import LOCAL_SOURCE
from bridge.services.addresses import mail_address
from bridge.services.errors import Conflict, InvalidValue
from bridge.services.users import user_name_key
from bridge.store.locks import lock_name
from bridge.store.models import AccountLink, LoginAttempt, User

if TYPE_CHECKING:
    from bridge.config import LdapSourceConfig

log = logging.getLogger(__name__)

RESET, EMAIL_CHANGE = RESET_LINK, EMAIL_LINK
RESET_PATH, EMAIL_PATH = "/account/reset", "/account/email"
REQUEST_REASON = "reset_request"  # the LoginAttempt rows that count reset requests (no lock counts them)
REQUEST_LOCK_SPACE = 0x72657371  # "resq": serialises the requests of one typed name
PROFILE_FIELDS = ("given_name", "family_name", "display_name", "preferred_language", "timezone")


def hash_link_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_for(ctx: AccountsContext, path: str, token: str) -> str:
    """The link a mail carries: the portal's own page when ``self_service.reset_url`` or
    ``email_url`` names one (``{token}`` in it), else dirbridge's page. The token rides in
    the query string: access logs record the path only."""
    config = ctx.config.self_service
    template = config.reset_url if path == RESET_PATH else config.email_url
    if template:
        return template.replace("{token}", token)
    return f"{ctx.public_url}{path}?token={token}"


def directory_source(ctx: AccountsContext, user: User) -> LdapSourceConfig | None:
    """The configured LDAP source a directory user comes from (None: not configured now)."""
    name = user.source.split(":", 1)[1]
    return next((s for s in ctx.config.ldap.sources if s.name == name), None)


# -- a forgotten password -------------------------------------------------------------


def _enabled(ctx: AccountsContext) -> None:
    if not ctx.config.self_service.enabled:
        raise SelfServiceOff("self-service is turned off here ([self_service] enabled = false): ask an administrator")


def _limited(uow: UnitOfWork, ctx: AccountsContext, key: str, client_ip: str | None) -> None:
    """Raise TooManyRequests past the hourly limits (per typed key, per client IP)."""
    config = ctx.config.self_service
    since = ctx.now() - timedelta(hours=1)

    def count(*where: Any) -> int:
        return uow.session.scalar(select(func.count()).select_from(LoginAttempt).where(
            LoginAttempt.reason == REQUEST_REASON, LoginAttempt.at > since, *where)) or 0

    if count(LoginAttempt.user_name_key == key) >= config.requests_per_hour or (
            client_ip and count(LoginAttempt.client_ip == client_ip) >= config.requests_per_ip_per_hour):
        raise TooManyRequests("too many reset requests: try again in an hour", retry_after=3600)


def _requested_user(uow: UnitOfWork, typed: str, key: str) -> User | None:
    """The active user the typed text names: a userName, else the one user with that address."""
    user = uow.session.scalar(select(User).where(User.user_name_key == key))
    if user is None and "@" in typed:
        found = list(uow.session.scalars(select(User).where(
            func.lower(User.email) == typed.strip().lower()).limit(2)))
        user = found[0] if len(found) == 1 else None  # an address two users share names neither
    if user is None or not user.active or not user.email:
        return None
    return user


def request_key(client_ip: str | None) -> str | None:
    """The address a request counts against: an IPv4 address, or an IPv6 address's /64
    (the least any provider hands one customer, who could otherwise ask from each of its
    addresses)."""
    if not client_ip:
        return None
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip[:64]
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def request_password_reset(ctx: AccountsContext, typed: str, client_ip: str | None, actor: Actor) -> None:
    """Mail a reset link to the user ``typed`` names (a userName or an e-mail address),
    if there is one; raise TooManyRequests past the limits, known name or not. The link
    and the mail are made after the answer (the outbox), so that a known name does no
    more work while the request waits than an unknown one."""
    _enabled(ctx)
    typed = typed.strip()[:320]
    key = user_name_key(typed)[:MAX_KEY_LENGTH] if typed else ""
    if not key:
        raise InvalidValue("give your user name or e-mail address", field="login")
    address = request_key(client_ip)
    with ctx.services.unit(actor) as uow:
        lock_name(uow.session, REQUEST_LOCK_SPACE, key)
        _limited(uow, ctx, key, address)
        uow.accounts.record_request(key, address, REQUEST_REASON, now=ctx.now())
        user = _requested_user(uow, typed, key)
        user_id = user.id if user is not None else None
    if user_id is not None:
        ctx.later(lambda: _send_reset(ctx, user_id, actor))


def _send_reset(ctx: AccountsContext, user_id: str, actor: Actor) -> None:
    with ctx.services.unit(actor) as uow:
        user = uow.users.get(user_id)
        if not user.active or not user.email:  # changed since the request
            return
        message = _reset_message(ctx, uow, user)
    ctx.send(message)


def _reset_message(ctx: AccountsContext, uow: UnitOfWork, user: User) -> Message:
    lang = language_for(user.preferred_language, ctx.config.invites.default_language)
    values = {"name": user.display_name or user.user_name, "user_name": user.user_name,
              "product": ctx.config.invites.product_name}
    if not _resettable(ctx, user):  # the password is another source's: say whom to ask, no link
        return render("password_reset_directory", lang, user.email or "", **values)
    now = ctx.now()
    token = secrets.token_urlsafe(32)
    link = uow.accounts.create_link(user, RESET, hash_link_token(token), now=now,
                                    expires_at=now + timedelta(minutes=ctx.config.self_service.reset_minutes))
    return render("password_reset", lang, user.email or "", link=link_for(ctx, RESET_PATH, token),
                  expires=format_time(link.expires_at, lang), **values)


def _resettable(ctx: AccountsContext, user: User) -> bool:
    """Whether dirbridge may set this user's password by a reset link: a local user's, or a
    directory user's whose source allows resets. An IdP's user's password is the IdP's
    (it sets it over SCIM, or keeps it): a link here would shadow it."""
    if is_directory_user(user):
        source = directory_source(ctx, user)
        return source is not None and source.passwords.reset
    return user.source == LOCAL_SOURCE


def _own_password(user: User) -> None:
    """Only a local user's password is set here (a directory user's goes to the directory)."""
    if user.source != LOCAL_SOURCE and not is_directory_user(user):
        raise Conflict(f"the password of {user.user_name!r} comes from {user.source} (your organisation's "
                       "identity provider): change it there", field="password")


def check_link(ctx: AccountsContext, uow: UnitOfWork, token: str, purpose: str) -> tuple[AccountLink, User]:
    """The open link of ``token`` and its user; LinkInvalid says why not."""
    # locked: of two uses at once (a double click), the second waits and finds it used
    link = uow.accounts.find_link(hash_link_token(token), purpose, lock=True) if token else None
    if link is None:
        raise LinkInvalid("unknown", "this link is not valid: check that the whole link was copied, or ask "
                                     "for a new one")
    if link.used_at is not None:
        raise LinkInvalid("used", "this link was used already: ask for a new one if you still need it")
    if link.revoked_at is not None:
        raise LinkInvalid("revoked", "a newer link replaced this one: use the newest mail")
    if ctx.now() >= link.expires_at:
        raise LinkInvalid("expired", "this link has expired: ask for a new one")
    user = uow.users.get(link.user_id)
    if not user.active:
        raise LinkInvalid("revoked", "this account is deactivated: ask an administrator")
    return link, user


def reset_user_name(ctx: AccountsContext, token: str) -> tuple[str, str]:
    """The userName and language a reset link is for (for the page); LinkInvalid if none."""
    with ctx.services.unit(Actor(name="reset-link", channel="account")) as uow:
        _, user = check_link(ctx, uow, token, RESET)
        return user.user_name, language_for(user.preferred_language, ctx.config.invites.default_language)


def complete_password_reset(ctx: AccountsContext, token: str, new_password: str, channel: str) -> User:
    """Set the password a reset link was for; the link is spent, the user's sessions end.
    A directory user's password is set in the directory (with the source's bind account)."""
    _enabled(ctx)
    with ctx.services.unit(Actor(name="reset-link", channel=channel)) as uow:
        link, user = check_link(ctx, uow, token, RESET)
        uow.accounts.use_link(link, user, now=ctx.now())  # a refused password below undoes this too
        _own_password(user)  # taken over by an IdP since the link went out
        if is_directory_user(user):
            _directory_reset(ctx, user, new_password)
            _after_directory_change(ctx, uow, user, "user.password-reset")
        else:
            set_new_password(ctx, uow, user, new_password)  # ends the other open links
        return user


def _directory_reset(ctx: AccountsContext, user: User, new_password: str) -> None:
    from bridge.ldap.passwords import reset_password

    source = directory_source(ctx, user)
    if source is None or not source.passwords.reset or not user.ldap_dn:
        raise Conflict(f"{user.user_name!r} is a directory user whose password dirbridge may not reset: "
                       "ask the directory's administrators", field="password")
    with directory_errors():
        reset_password(source, user.ldap_dn, new_password)


def reset_by_admin(ctx: AccountsContext, uow: UnitOfWork, user: User) -> str:
    """An admin's reset to a random temporary password, shown once by the caller: a local
    user must change it at the next login; a directory user's is set in the directory
    (when the source allows resets), whose own rules say whether it must be changed."""
    if not is_directory_user(user):
        return reset_to_temporary(ctx, uow, user)
    temporary = temporary_password(ctx.config.policy.password)
    _directory_reset(ctx, user, temporary)  # the source's passwords.reset is its owner's consent
    _after_directory_change(ctx, uow, user, "user.password-reset")
    return temporary


def _after_directory_change(ctx: AccountsContext, uow: UnitOfWork, user: User, action: str) -> None:
    """What follows a password the directory took: the audit event, every session and
    open link of the user ended (an e-mail change asked for from a stolen session too)."""
    uow.accounts.note_directory_password(user, action)
    uow.accounts.end_sessions(user)
    uow.accounts.revoke_links(user, RESET, now=ctx.now())


# -- a new password, the current one first ----------------------------------------------


def change_password(ctx: AccountsContext, user: User, current: str, new_password: str, actor: Actor) -> None:
    """Change the password of a user whose current password the caller has just verified
    (bridge.accounts.login): a local user's by the policy and history, a directory user's
    in the directory, as that user. Another source's user's password is that source's (409)."""
    _own_password(user)
    if is_directory_user(user):
        from bridge.ldap.passwords import change_own_password

        source = directory_source(ctx, user)
        if source is None or not user.ldap_dn:
            raise Conflict(f"{user.source} is not configured: the password cannot be changed now", field="password")
        with directory_errors():
            change_own_password(source, user.ldap_dn, current, new_password)
        with ctx.services.unit(actor) as uow:
            _after_directory_change(ctx, uow, uow.users.get(user.id), "user.password-change")
        return
    with ctx.services.unit(actor) as uow:
        set_new_password(ctx, uow, uow.users.get(user.id), new_password)


@contextmanager
def directory_errors() -> Iterator[None]:
    """Turn the directory's answers into the service errors every channel maps."""
    from bridge.accounts.errors import DirectoryPasswordPolicy, DirectoryUnreachable
    from bridge.ldap.auth import DirectoryUnavailable
    from bridge.ldap.passwords import DirectoryPasswordRejected

    try:
        yield
    except DirectoryPasswordRejected as exc:
        raise DirectoryPasswordPolicy(exc.code, exc.message) from None
    except DirectoryUnavailable:
        raise DirectoryUnreachable("the directory cannot be reached: try again later") from None


# -- the profile and the e-mail address ------------------------------------------------------


def _own_profile(user: User, what: str) -> None:
    if user.source != LOCAL_SOURCE:
        where = "your directory" if user.source.startswith("ldap:") else "your organisation's identity provider"
        raise Conflict(f"{what} of {user.user_name!r} come from {user.source} ({where}): change them there",
                       field=what.replace(" ", "_"))


def update_profile(ctx: AccountsContext, uow: UnitOfWork, user: User, changes: dict[str, Any]) -> User:
    """The user's own names, language and time zone (a local user's; another source owns
    the rest's). Only PROFILE_FIELDS are taken; each is validated by the service layer."""
    _enabled(ctx)
    unknown = sorted(set(changes) - set(PROFILE_FIELDS))
    if unknown:
        raise InvalidValue(f"a user may change only {', '.join(PROFILE_FIELDS)} here, not {', '.join(unknown)}",
                           field=unknown[0])
    _own_profile(user, "the profile")
    return uow.users.update(user, **changes)


@dataclass(frozen=True)
class EmailChangeAsked:
    new_email: str
    expires_at: datetime


def request_email_change(ctx: AccountsContext, user_ref: str, new_email: str, actor: Actor) -> EmailChangeAsked:
    """Mail a confirmation link to ``new_email`` for the user named by id or userName; the
    address changes only when it is opened. The current address is told, so that a
    taken-over session is noticed. At most
    ``self_service.requests_per_hour`` an hour per user (each mail carries the user's
    display name to an address the user chose). The link is stored before the mail goes
    out, not while it does: a slow mail server holds no write lock."""
    _enabled(ctx)
    address = mail_address(new_email.strip()) if new_email else None
    if address is None:
        raise InvalidValue(f"email: {new_email[:64]!r} is not an e-mail address", field="email")
    now = ctx.now()
    with ctx.services.unit(actor) as uow:
        user = uow.users.by_ref(user_ref)
        user_id = user.id
        _own_profile(user, "the e-mail address")
        if user.email and address.lower() == user.email.lower():
            raise InvalidValue("email: that is the current address already", field="email")
        if uow.accounts.links_since(user, EMAIL_CHANGE, now - timedelta(hours=1)) >= \
                ctx.config.self_service.requests_per_hour:
            raise TooManyRequests("too many e-mail changes: try again in an hour", retry_after=3600)
        token = secrets.token_urlsafe(32)
        link = uow.accounts.create_link(user, EMAIL_CHANGE, hash_link_token(token), now=now, new_email=address,
                                        expires_at=now + timedelta(hours=ctx.config.self_service.email_change_hours))
        lang = language_for(user.preferred_language, ctx.config.invites.default_language)
        values = {"name": user.display_name or user.user_name, "user_name": user.user_name,
                  "product": ctx.config.invites.product_name, "new_email": address}
        confirm = render("email_change", lang, address, link=link_for(ctx, EMAIL_PATH, token),
                         expires=format_time(link.expires_at, lang), **values)
        notice = render("email_change_notice", lang, user.email, **values) if user.email else None
        asked = EmailChangeAsked(address, link.expires_at)
    try:
        ctx.send(confirm)
    except MailError as exc:
        from bridge.accounts.errors import MailFailed

        with ctx.services.unit(actor) as uow:  # the link no mail carries works for nobody
            uow.accounts.revoke_links(uow.users.get(user_id), EMAIL_CHANGE, now=ctx.now())
        raise MailFailed(f"the confirmation was not sent, nothing was changed: {exc}") from None
    if notice is not None:
        ctx.post(notice)
    return asked


def confirm_email_change(ctx: AccountsContext, token: str, channel: str) -> User:
    """Open the link sent to the new address: the address changes, the link is spent."""
    _enabled(ctx)
    with ctx.services.unit(Actor(name="email-link", channel=channel)) as uow:
        link, user = check_link(ctx, uow, token, EMAIL_CHANGE)
        _own_profile(user, "the e-mail address")
        uow.users.update(user, email=link.new_email)
        uow.accounts.use_link(link, user, now=ctx.now())
        uow.accounts.revoke_links(user, RESET, now=ctx.now())  # those went to the old mailbox
        return user
