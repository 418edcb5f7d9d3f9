"""Account writes: passwords and their history, locks, login attempts, invitations,
the links users ask for themselves (reset, e-mail change), TOTP credentials and
recovery codes. The decisions live in bridge.accounts; this
is where they are stored, in the caller's unit of work, each with an audit event
that never holds a secret (hashes, tokens, TOTP secrets, codes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, or_, select, update

from bridge.services import audit
from bridge.services.errors import Conflict, InvalidValue, NotFound
from bridge.store.db import Store, rowcount
from bridge.store.models import (
    AccountLink,
    Invitation,
    LoginAttempt,
    PasswordHistory,
    RecoveryCode,
    TotpCredential,
    User,
)

if TYPE_CHECKING:
    from bridge.services.unit import UnitOfWork

MAX_HISTORY = 20
PASSWORD_EXPIRED = "password_expired"
#: the purposes of the links users ask for themselves (AccountLink.purpose)
RESET_LINK, EMAIL_LINK = "password_reset", "email_change"


def is_directory_user(user: User) -> bool:
    """Directory users authenticate by an LDAP bind: dirbridge keeps no password for them. A
    user whose entry left the directory (its DN forgotten, its stable id kept) still is one."""
    return user.source.startswith("ldap:") and bool(user.ldap_dn or user.source_id)


def _lock_state(user: User) -> dict[str, object]:
    return {"locked_until": user.locked_until, "lock_reason": user.lock_reason}


@dataclass
class AccountService:
    uow: UnitOfWork

    # -- passwords ---------------------------------------------------------------

    def recent_hashes(self, user: User, count: int) -> list[str]:
        """The hashes of the user's last ``count`` passwords, newest first."""
        if count <= 0:
            return []
        rows = self.uow.session.scalars(
            select(PasswordHistory.password_hash).where(PasswordHistory.user_id == user.id)
            .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id.desc()).limit(count))
        return list(rows)

    def set_password(self, user: User, password_hash: str, *, now: datetime, must_change: bool = False,
                     keep_history: int = MAX_HISTORY) -> None:
        """Store a new password (already hashed and checked against the policy); it joins
        the history, and a lock for an expired password ends with it."""
        if is_directory_user(user):
            raise InvalidValue(f"{user.user_name!r} is a directory user: the password lives in "
                               f"{user.source}, change it there", field="password")
        self.uow.users.set_password_hash(user, password_hash, must_change=must_change)
        user.password_changed_at = now
        self.uow.session.add(PasswordHistory(user_id=user.id, password_hash=password_hash, created_at=now))
        self.uow.session.flush()
        keep = self.uow.session.scalars(
            select(PasswordHistory.id).where(PasswordHistory.user_id == user.id)
            .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id.desc())
            .limit(max(1, min(keep_history, MAX_HISTORY))))
        self.uow.session.execute(delete(PasswordHistory).where(
            PasswordHistory.user_id == user.id, PasswordHistory.id.not_in(list(keep))))
        if user.lock_reason == PASSWORD_EXPIRED:
            self._set_lock(user, None, None, "user.unlock")
        # a new password, by any way, ends the open links: a reset's, and an e-mail change
        # asked for from a stolen session (which would otherwise bring a reset to the thief)
        self.revoke_links(user, RESET_LINK, now=now)
        self.revoke_links(user, EMAIL_LINK, now=now)

    def note_directory_password(self, user: User, action: str) -> None:
        """A directory user's password was changed or reset in the directory (nothing of it
        is kept here): the audit event says so, and by whom."""
        audit.record(self.uow.session, self.uow.actor, action, "user", user.id, user.user_name,
                     {"password": [audit.REDACTED, audit.REDACTED], "directory": [None, user.source]})

    def rehash(self, user: User, password_hash: str) -> None:
        """Replace the hash of the same password (new argon2 parameters); its age stays."""
        user.password_hash = password_hash
        self.uow.session.execute(update(PasswordHistory).where(
            PasswordHistory.user_id == user.id, PasswordHistory.created_at == user.password_changed_at)
            .values(password_hash=password_hash))
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "user.password-rehash", "user", user.id, user.user_name,
                     {"password_hash": [audit.REDACTED, audit.REDACTED]})

    # -- locks ---------------------------------------------------------------------

    def lock(self, user: User, until: datetime | None, reason: str) -> None:
        """Lock the account until ``until`` (None: until an admin unlocks it); its operator
        sessions end for good."""
        if user.lock_reason == reason and user.locked_until == until:
            return
        user.sessions_valid_after = self.uow.now()
        self._set_lock(user, until, reason, "user.lock")

    def unlock(self, user: User, *, now: datetime) -> bool:
        """Lift any lock and start the failure count afresh; False if there was nothing to lift."""
        was_locked = user.lock_reason is not None
        self.uow.session.add(LoginAttempt(at=now, user_name_key=user.user_name_key, client_ip=None,
                                          success=True, reason="unlock"))
        if was_locked:
            self._set_lock(user, None, None, "user.unlock")
        else:
            self.uow.session.flush()
        return was_locked

    def release_expired_locks(self, now: datetime) -> int:
        """Lift the time-limited locks whose time is over (the lockout-release job)."""
        users = list(self.uow.session.scalars(select(User).where(
            User.lock_reason.is_not(None), User.locked_until.is_not(None), User.locked_until <= now)))
        for user in users:
            self._set_lock(user, None, None, "user.unlock")
        return len(users)

    def unlock_ip(self, client_ip: str, *, now: datetime) -> None:
        from bridge.accounts.lockout import IP_UNLOCK, IP_UNLOCK_KEY

        self.uow.session.add(LoginAttempt(at=now, user_name_key=IP_UNLOCK_KEY, client_ip=client_ip,
                                          success=True, reason=IP_UNLOCK))
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "login.ip-unlock", "client_ip", client_ip, client_ip)

    def _set_lock(self, user: User, until: datetime | None, reason: str | None, action: str) -> None:
        before = _lock_state(user)
        user.locked_until, user.lock_reason = until, reason
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, action, "user", user.id, user.user_name,
                     audit.diff(before, _lock_state(user)))

    # -- operator sessions -------------------------------------------------------------

    def end_sessions(self, user: User) -> None:
        """Refuse every operator session of ``user`` issued until now (a logout ends them
        on every browser and replica; bridge.web.operator)."""
        user.sessions_valid_after = self.uow.now()
        self.revoke_links(user, EMAIL_LINK, now=self.uow.now())  # asked for in a session that may be stolen
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "logout", "user", user.id, user.user_name)

    # -- login attempts --------------------------------------------------------------

    def record_attempt(self, name_key: str, client_ip: str | None, reason: str, *, now: datetime,
                       user: User | None = None, typed_name: str | None = None) -> None:
        """One login attempt decided without a check (refused as locked, say), for the
        lockout counts and the audit log (never the password)."""
        attempt = LoginAttempt(at=now, user_name_key=name_key[:256], client_ip=client_ip, success=reason == "ok",
                               reason=reason)
        self.uow.session.add(attempt)
        self._attempt_settled(reason, now, user, typed_name or name_key, client_ip)

    def prune_attempts(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` of the login attempts made before ``before``; the caller
        repeats in units of their own (a flood of guesses can leave millions of rows, and
        one DELETE of them all would hold the write lock for long)."""
        ids = list(self.uow.session.scalars(select(LoginAttempt.id).where(LoginAttempt.at < before)
                                            .order_by(LoginAttempt.id).limit(limit)))
        if ids:
            self.uow.session.execute(delete(LoginAttempt).where(LoginAttempt.id.in_(ids)))
        return len(ids)

    def reserve_attempt(self, name_key: str, client_ip: str | None, *, now: datetime) -> int:
        """A login attempt about to be checked: counted as a failure (``pending``) until
        ``settle_attempt`` says how it ended, so concurrent attempts see it at once."""
        from bridge.accounts.lockout import PENDING

        attempt = LoginAttempt(at=now, user_name_key=name_key[:256], client_ip=client_ip, success=False,
                               reason=PENDING)
        self.uow.session.add(attempt)
        self.uow.session.flush()
        return attempt.id

    def settle_attempt(self, attempt_id: int, reason: str, *, now: datetime, name_key: str,
                       client_ip: str | None, user: User | None = None, typed_name: str | None = None) -> None:
        """How a reserved attempt ended (``ok``, ``bad_password``...), and its audit event."""
        self.uow.session.execute(update(LoginAttempt).where(LoginAttempt.id == attempt_id)
                                 .values(reason=reason, success=reason == "ok"))
        self._attempt_settled(reason, now, user, typed_name or name_key, client_ip)

    def _attempt_settled(self, reason: str, now: datetime, user: User | None, typed_name: str,
                         client_ip: str | None) -> None:
        success = reason == "ok"
        if success and user is not None:
            user.last_login_at = now
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "login.ok" if success else "login.failed",
                     "user" if user is not None else "login", user.id if user is not None else None,
                     user.user_name if user is not None else typed_name[:256],
                     {"reason": [None, reason], "client_ip": [None, client_ip]})

    # -- invitations -------------------------------------------------------------------

    def create_invitation(self, user: User, token_hash: str, *, now: datetime, expires_at: datetime) -> Invitation:
        """A new single-use invitation; the user's earlier open ones stop working."""
        if is_directory_user(user):
            raise InvalidValue(f"{user.user_name!r} is a directory user and logs in with the password of "
                               f"{user.source}: there is nothing to invite to", field="user")
        if not user.active:
            raise Conflict(f"{user.user_name!r} is inactive: activate the user before inviting", field="user")
        if not user.email:
            raise InvalidValue(f"{user.user_name!r} has no e-mail address", field="email")
        for open_one in self.open_invitations(user, now):
            self.revoke_invitation(open_one, now=now)
        invitation = Invitation(user_id=user.id, token_hash=token_hash, created_by=self.uow.actor.name,
                                created_at=now, expires_at=expires_at)
        self.uow.session.add(invitation)
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "invitation.create", "invitation", invitation.id,
                     user.user_name, {"user": [None, user.id], "expires_at": [None, expires_at.isoformat()]})
        return invitation

    def open_invitations(self, user: User, now: datetime) -> list[Invitation]:
        return list(self.uow.session.scalars(select(Invitation).where(
            Invitation.user_id == user.id, Invitation.used_at.is_(None), Invitation.revoked_at.is_(None),
            Invitation.expires_at > now)))

    def get_invitation(self, invitation_id: str) -> Invitation:
        invitation = self.uow.session.get(Invitation, invitation_id)
        if invitation is None:
            raise NotFound(f"no invitation with id {invitation_id}", field="invitation")
        return invitation

    def find_invitation(self, token_hash: str) -> Invitation | None:
        return self.uow.session.scalar(select(Invitation).where(Invitation.token_hash == token_hash))

    def mark_sent(self, invitation: Invitation, *, now: datetime) -> None:
        invitation.sent_at = now
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "invitation.send", "invitation", invitation.id, None,
                     {"sent_at": [None, now.isoformat()]})

    def revoke_invitation(self, invitation: Invitation, *, now: datetime) -> bool:
        if invitation.used_at is not None or invitation.revoked_at is not None:
            return False
        invitation.revoked_at = now
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "invitation.revoke", "invitation", invitation.id, None,
                     {"revoked_at": [None, now.isoformat()]})
        return True

    def use_invitation(self, invitation: Invitation, *, now: datetime) -> None:
        invitation.used_at = now
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "invitation.use", "invitation", invitation.id, None,
                     {"used_at": [None, now.isoformat()]})

    def expire_invitations(self, now: datetime) -> int:
        """Close the open invitations past their time (``expired_at``), so they count for purging."""
        found = list(self.uow.session.scalars(select(Invitation).where(
            Invitation.used_at.is_(None), Invitation.revoked_at.is_(None), Invitation.expired_at.is_(None),
            Invitation.expires_at <= now)))
        for invitation in found:
            invitation.expired_at = now
            audit.record(self.uow.session, self.uow.actor, "invitation.expire", "invitation", invitation.id,
                         None, {"expired_at": [None, now.isoformat()]})
        self.uow.session.flush()
        return len(found)

    def purge_invitations(self, before: datetime) -> int:
        """Delete the invitations closed (used, revoked or expired) before ``before``."""
        result = self.uow.session.execute(delete(Invitation).where(or_(
            Invitation.used_at < before, Invitation.revoked_at < before, Invitation.expired_at < before,
            Invitation.expires_at < before)))
        count = rowcount(result)
        if count:
            audit.record(self.uow.session, self.uow.actor, "invitation.purge", "invitation", None, None,
                         {"deleted": [None, count], "closed_before": [None, before.isoformat()]})
        return count

    # -- the links users ask for themselves ------------------------------------------------

    def create_link(self, user: User, purpose: str, token_hash: str, *, now: datetime, expires_at: datetime,
                    new_email: str | None = None) -> AccountLink:
        """A single-use link of ``purpose``; the user's earlier open links of it stop working."""
        self.revoke_links(user, purpose, now=now)
        link = AccountLink(user_id=user.id, purpose=purpose, token_hash=token_hash, new_email=new_email,
                           created_at=now, expires_at=expires_at)
        self.uow.session.add(link)
        self.uow.session.flush()
        changes: dict[str, list[object]] = {"purpose": [None, purpose], "expires_at": [None, expires_at.isoformat()]}
        if new_email is not None:
            changes["new_email"] = [None, new_email]
        audit.record(self.uow.session, self.uow.actor, "account-link.create", "user", user.id, user.user_name,
                     changes)
        return link

    def find_link(self, token_hash: str, purpose: str, *, lock: bool = False) -> AccountLink | None:
        """The link of ``token_hash``; ``lock`` holds its row until the unit ends (its use)."""
        query = select(AccountLink).where(AccountLink.token_hash == token_hash, AccountLink.purpose == purpose)
        return self.uow.session.scalar(query.with_for_update() if lock else query)

    def links_since(self, user: User, purpose: str, since: datetime) -> int:
        """How many links of ``purpose`` the user asked for since ``since``."""
        return self.uow.session.scalar(select(func.count()).select_from(AccountLink).where(
            AccountLink.user_id == user.id, AccountLink.purpose == purpose, AccountLink.created_at > since)) or 0

    def use_link(self, link: AccountLink, user: User, *, now: datetime) -> None:
        link.used_at = now
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "account-link.use", "user", user.id, user.user_name,
                     {"purpose": [None, link.purpose]})

    def revoke_links(self, user: User, purpose: str, *, now: datetime) -> int:
        """Close the user's open links of ``purpose`` (a new one, or the password they were for, came)."""
        result = self.uow.session.execute(update(AccountLink).where(
            AccountLink.user_id == user.id, AccountLink.purpose == purpose, AccountLink.used_at.is_(None),
            AccountLink.revoked_at.is_(None), AccountLink.expires_at > now).values(revoked_at=now))
        return rowcount(result)

    def purge_links(self, before: datetime) -> int:
        """Delete the links that expired, or were used or revoked, before ``before``."""
        result = self.uow.session.execute(delete(AccountLink).where(or_(
            AccountLink.used_at < before, AccountLink.revoked_at < before, AccountLink.expires_at < before)))
        return rowcount(result)

    def record_request(self, key: str, client_ip: str | None, reason: str, *, now: datetime) -> None:
        """Count a request that must be rate-limited alike for known and unknown names (a
        forgotten-password request): a row among the login attempts, which no lock counts."""
        self.uow.session.add(LoginAttempt(at=now, user_name_key=key[:256], client_ip=client_ip, success=True,
                                          reason=reason))
        self.uow.session.flush()

    def record_expiry_warning(self, user: User, *, now: datetime, expires_at: datetime) -> None:
        """Note that the expiry warning of the user's current password went out."""
        user.password_warned_at = now
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "user.password-expiry-warning", "user", user.id,
                     user.user_name, {"expires_at": [None, expires_at.isoformat()]})

    # -- TOTP ----------------------------------------------------------------------------

    def totp_credential(self, user: User) -> TotpCredential | None:
        return self.uow.session.get(TotpCredential, user.id)

    def start_totp(self, user: User, secret: str, *, now: datetime) -> TotpCredential:
        """Begin (or begin again) an enrolment; a confirmed credential must be reset first."""
        found = self.totp_credential(user)
        if found is not None and found.confirmed_at is not None:
            raise Conflict(f"{user.user_name!r} has TOTP already; an admin resets it first (dirbridge user totp "
                           f"reset {user.user_name}, or DELETE /api/v1/users/{user.id}/totp)", field="totp")
        if found is not None:
            self.uow.session.delete(found)
            self.uow.session.flush()
        credential = TotpCredential(user_id=user.id, secret=secret, created_at=now)
        self.uow.session.add(credential)
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "totp.enrol", "user", user.id, user.user_name,
                     {"totp": [None, "pending"], "secret": [None, audit.REDACTED]})
        return credential

    def confirm_totp(self, user: User, credential: TotpCredential, counter: int, code_hashes: list[str], *,
                     now: datetime) -> None:
        credential.confirmed_at = now
        credential.last_counter = counter
        self._replace_recovery_codes(user, code_hashes)
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "totp.confirm", "user", user.id, user.user_name,
                     {"totp": ["pending", "confirmed"], "recovery_codes": [None, len(code_hashes)]})

    def accept_totp_counter(self, credential: TotpCredential, counter: int) -> None:
        """Remember the time step of an accepted code, so it cannot be used again."""
        credential.last_counter = counter
        self.uow.session.flush()

    def use_recovery_code(self, user: User, code_hash: str, *, now: datetime) -> bool:
        """Spend one recovery code; False if it is unknown or spent."""
        code = self.uow.session.scalar(select(RecoveryCode).where(
            RecoveryCode.user_id == user.id, RecoveryCode.code_hash == code_hash, RecoveryCode.used_at.is_(None)))
        if code is None:
            return False
        code.used_at = now
        self.uow.session.flush()
        left = self.recovery_codes_left(user)
        audit.record(self.uow.session, self.uow.actor, "totp.recovery-code", "user", user.id, user.user_name,
                     {"recovery_codes": [left + 1, left]})
        return True

    def recovery_codes_left(self, user: User) -> int:
        return len(list(self.uow.session.scalars(select(RecoveryCode.id).where(
            RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))))

    def replace_recovery_codes(self, user: User, code_hashes: list[str]) -> None:
        self._replace_recovery_codes(user, code_hashes)
        audit.record(self.uow.session, self.uow.actor, "totp.recovery-codes", "user", user.id, user.user_name,
                     {"recovery_codes": [None, len(code_hashes)]})

    def reset_totp(self, user: User) -> bool:
        """Remove the user's TOTP credential and recovery codes; False if there was none."""
        credential = self.totp_credential(user)
        self.uow.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        if credential is None:
            return False
        self.uow.session.delete(credential)
        self.uow.session.flush()
        audit.record(self.uow.session, self.uow.actor, "totp.reset", "user", user.id, user.user_name,
                     {"totp": ["confirmed" if credential.confirmed_at else "pending", None]})
        return True

    def _replace_recovery_codes(self, user: User, code_hashes: list[str]) -> None:
        self.uow.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        for code_hash in code_hashes:
            self.uow.session.add(RecoveryCode(user_id=user.id, code_hash=code_hash))
        self.uow.session.flush()


def replace_totp_secret(store: Store, user_id: str, stored: str, sealed: str) -> bool:
    """Store ``sealed`` for the user's TOTP secret if it still is ``stored`` (a TOTP reset
    meanwhile wins): the TOTP vault's reseal (bridge.accounts.vault)."""
    with store.write() as session:
        return rowcount(session.execute(update(TotpCredential).where(
            TotpCredential.user_id == user_id, TotpCredential.secret == stored).values(secret=sealed))) == 1
