"""The accounts' scheduled jobs: invitation expiry and purge, password expiry (lock
and warning mail), lockout release. Each reads the runtime's clock."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from bridge.accounts.context import AccountsContext, context_for
from bridge.accounts.mail import MailError
from bridge.accounts.messages import format_time, language_for, render
from bridge.accounts.passwords import expiry
from bridge.services import Actor, UnitOfWork
from bridge.services.accounts import PASSWORD_EXPIRED
from bridge.store.models import User

if TYPE_CHECKING:
    from bridge.jobs.registry import JobSpec
    from bridge.runtime import Runtime

log = logging.getLogger(__name__)
PRUNE_CHUNK = 5000  # login attempts deleted per transaction


def invitation_cleanup(rt: Runtime) -> dict[str, Any]:
    """Close invitations past their time; delete those closed longer than the retention (and
    the users' own reset and e-mail links likewise)."""
    ctx = context_for(rt)
    now = ctx.now()
    with rt.services.unit(Actor.system("invitation-cleanup")) as uow:
        expired = uow.accounts.expire_invitations(now)
        purged = uow.accounts.purge_invitations(now - timedelta(days=rt.config.invites.retention_days))
        links = uow.accounts.purge_links(now - timedelta(days=rt.config.invites.retention_days))
    return {"expired": expired, "purged": purged, "links_purged": links}


def lockout_release(rt: Runtime) -> dict[str, Any]:
    """Lift the failure locks whose time is over, so admins see the accounts as open again."""
    now = context_for(rt).now()
    with rt.services.unit(Actor.system("lockout-release")) as uow:
        return {"released": uow.accounts.release_expired_locks(now)}


def login_attempts_prune(rt: Runtime) -> dict[str, Any]:
    """Delete login attempts older than any lock decision can look back (the lockout's
    window and lock time, twice over): every failed login, an unknown name's too, adds a
    row, so the table would otherwise grow with every guess ever made. The audit log keeps
    the logins for ``audit.retention_days``."""
    now = context_for(rt).now()
    policy = rt.config.policy.lockout
    before = now - 2 * timedelta(hours=policy.window_hours + policy.lock_hours)
    deleted = 0
    while True:
        with rt.services.unit(Actor.system("login-attempts-prune")) as uow:
            done = uow.accounts.prune_attempts(before, PRUNE_CHUNK)
        deleted += done
        if done < PRUNE_CHUNK:
            return {"deleted": deleted}


def password_expiry(rt: Runtime) -> dict[str, Any]:
    """Lock local accounts whose password is older than ``max_age_days``, and mail a warning
    once, ``warn_days`` before. A failed mail is tried again at the next run."""
    ctx = context_for(rt)
    policy = rt.config.policy.password
    counts = {"locked": 0, "warned": 0, "mail_errors": 0}
    if policy.max_age_days is None:
        return counts
    now = ctx.now()
    actor = Actor.system("password-expiry")
    oldest_fresh = now - timedelta(days=policy.max_age_days) + timedelta(days=policy.warn_days)
    with rt.store.read() as session:
        candidates = list(session.scalars(select(User.id).where(
            User.active.is_(True), User.password_hash.is_not(None), User.must_change_password.is_(False),
            User.password_changed_at <= oldest_fresh)))
    for user_id in candidates:
        try:
            with rt.services.unit(actor) as uow:
                outcome = _check_one(ctx, uow, user_id, now)
        except MailError as exc:  # the unit rolled back: no warning recorded, tried again next run
            log.warning("password expiry warning not sent: %s", exc, extra={"user_id": user_id})
            outcome = "mail_errors"
        if outcome:
            counts[outcome] += 1
    return counts


def _check_one(ctx: AccountsContext, uow: UnitOfWork, user_id: str, now: datetime) -> str | None:
    """Lock the user's account or warn them, as due; returns what was done."""
    policy = ctx.config.policy.password
    user = uow.session.get(User, user_id, with_for_update=True)
    if user is None or user.password_changed_at is None or user.lock_reason == PASSWORD_EXPIRED:
        return None
    due = expiry(policy, user.password_changed_at)
    assert due.expires_at is not None and due.warn_from is not None
    if due.expires_at <= now:
        uow.accounts.lock(user, None, PASSWORD_EXPIRED)
        return "locked"
    if due.warn_from > now or not user.email or _warned(user):
        return None
    lang = language_for(user.preferred_language, ctx.config.invites.default_language)
    message = render("password_expiry", lang, user.email, name=user.display_name or user.user_name,
                     user_name=user.user_name, expires=format_time(due.expires_at, lang),
                     product=ctx.config.invites.product_name)
    uow.accounts.record_expiry_warning(user, now=now, expires_at=due.expires_at)
    ctx.send(message)  # last: a refused mail rolls the record back
    return "warned"


def _warned(user: User) -> bool:
    """Whether the warning for the current password went out already."""
    changed = user.password_changed_at
    return user.password_warned_at is not None and changed is not None and user.password_warned_at >= changed


def account_job_specs(rt: Runtime) -> list[JobSpec]:
    from bridge.jobs.registry import JobSpec

    return [
        JobSpec("invitation-cleanup", "1h", invitation_cleanup,
                "expire invitations and purge them after the retention"),
        JobSpec("password-expiry", "1h", password_expiry, "lock expired passwords, warn before"),
        JobSpec("lockout-release", "5m", lockout_release, "lift login locks whose time is over"),
        JobSpec("login-attempts-prune", "1h", login_attempts_prune,
                "delete login attempts older than the lockout looks back"),
    ]
