"""The login decision for the portal: password (local argon2id, or an LDAP bind for
directory users), the account's state, then TOTP when enrolled.

Rules that callers rely on:

- a wrong user name and a wrong password get the same answer, after the same
  work (an unknown name is verified against a dummy hash) and count alike
  towards the lockout;
- the lockout (per account and per client IP) is checked before any password
  check, and answered alike for known and unknown names; the check and the
  attempt's reservation are one transaction (serialised per name and per IP), and
  a reserved attempt counts as a failure until it is settled, so however many
  guesses arrive at once, at most the limit are checked per lock period;
- the account's own state (locked, inactive, API-only, IP allow-list, expired
  password) is told only to someone who knew the password;
- every attempt is recorded (LoginAttempt, audit event); the password never is.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.accounts import lockout, totp
from bridge.accounts.context import AccountsContext
from bridge.accounts.passwords import burn_verify, expiry, hash_password, needs_rehash, verify_hash
from bridge.accounts.vault import SealBroken
from bridge.names import MAX_KEY_LENGTH
from bridge.services import Actor
from bridge.services.accounts import PASSWORD_EXPIRED, is_directory_user
from bridge.services.users import user_name_key
from bridge.store.locks import lock_name
from bridge.store.models import AccessType, TotpCredential, User

log = logging.getLogger(__name__)

INVALID = "wrong user name or password"


@dataclass(frozen=True)
class LoginOutcome:
    """The answer to one attempt; ``status`` is the HTTP status the API answers with."""

    status: int
    code: str
    message: str
    user_id: str | None = None
    locked_until: datetime | None = None
    password_change_required: bool = False
    totp_enrolment_required: bool = False
    recovery_codes_left: int | None = None
    flags: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200


def _ip_allowed(allowlist: list[str], client_ip: str | None) -> bool:
    """An empty list allows every address; entries are addresses or networks (CIDR)."""
    if not allowlist:
        return True
    if not client_ip:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    for entry in allowlist:
        try:
            if address in ipaddress.ip_network(str(entry).strip(), strict=False):
                return True
        except ValueError:
            log.warning("ignoring an invalid IP allow-list entry", extra={"entry": str(entry)})
    return False


# The key space of the advisory locks on user names (PostgreSQL's two-int form: this
# namespace and a 32-bit hash of the name key), apart from any other advisory lock.
NAME_LOCK_SPACE = 0x6C6F676E  # "logn"


IP_LOCK_SPACE = 0x6C6F6769  # "logi": the same for client IPs


def _lock_name(session: Session, name_key: str) -> None:
    """Serialise the attempts on one user name, known or not, until the transaction ends
    (so that a reservation, or the failure that reaches the limit, sees every earlier one)."""
    lock_name(session, NAME_LOCK_SPACE, name_key)


class Login:
    """One login attempt; ``run`` decides and records."""

    def __init__(self, ctx: AccountsContext, user_name: str, password: str, code: str | None,
                 client_ip: str | None, *, channel: str = "admin-api", actor: str = "portal",
                 request_id: str | None = None):
        self.ctx = ctx
        self.typed = user_name.strip()
        # as stored (no user has a longer key): counted and looked up under the same key
        self.key = user_name_key(user_name)[:MAX_KEY_LENGTH]
        self.password = password
        self.code = (code or "").strip() or None
        self.client_ip = client_ip
        self.now = ctx.now()
        self.actor = Actor(name=actor, channel=channel, request_id=request_id)
        self.lockout = ctx.config.policy.lockout
        self.policy = ctx.config.policy.password
        self.slot: int | None = None  # the reserved LoginAttempt, once the locks let it be checked

    # -- recording ----------------------------------------------------------------

    def _reserve(self, user: User | None) -> LoginOutcome | None:
        """Check the locks and reserve this attempt in one transaction, serialised with
        every other attempt on the same name and from the same IP (PostgreSQL: advisory
        locks; SQLite: its one write lock). The reserved attempt counts as a failure until
        ``_record`` settles it. None when the password may be checked; else the refusal."""
        with self.ctx.services.unit(self.actor) as uow:
            _lock_name(uow.session, self.key)
            if self.client_ip:
                lock_name(uow.session, IP_LOCK_SPACE, self.client_ip)
            ip_until = lockout.ip_locked_until(uow.session, self.lockout, self.client_ip, self.now)
            account_until = lockout.account_locked_until(uow.session, self.lockout, self.key, self.now)
            if ip_until is None and account_until is None:
                self.slot = uow.accounts.reserve_attempt(self.key, self.client_ip, now=self.now)
                return None
            reason = "ip_locked" if ip_until is not None else "locked"
            uow.accounts.record_attempt(self.key, self.client_ip, reason, now=self.now, user=user,
                                        typed_name=self.typed)
        if ip_until is not None:
            return LoginOutcome(423, "locked", "too many failed logins from this address: try again later",
                                locked_until=ip_until)
        return LoginOutcome(423, "locked", "too many failed logins: the account is locked for now",
                            locked_until=account_until)

    def _settle(self, uow, reason: str, user: User | None) -> None:  # type: ignore[no-untyped-def]
        assert self.slot is not None, "an attempt is settled only after it was reserved"
        uow.accounts.settle_attempt(self.slot, reason, now=self.now, name_key=self.key, client_ip=self.client_ip,
                                    user=user, typed_name=self.typed)

    def _record(self, reason: str, user: User | None, *, failure: bool = False) -> datetime | None:
        """Settle the reserved attempt; after a failure, lock the account when it reached
        the limit. Returns the end of the lock that this failure started, if any.

        ``user`` is the row read before the password check (detached: the attempt and its
        audit event need only its id and name). A failure runs the same statements whether
        the name exists or not, so that the time of a failed login does not tell which user
        names exist (tests/reliability/test_web_security.py): the failures of one name are
        serialised by a lock on the *name* (PostgreSQL: a transaction advisory lock; SQLite:
        the write lock of every write transaction), not by the user's row, which only known
        names have; the row is locked and written only by the failure that reaches the limit."""
        started = None
        with self.ctx.services.unit(self.actor) as uow:
            if failure:
                _lock_name(uow.session, self.key)
            self._settle(uow, reason, user)
            if failure:
                until = lockout.account_locked_until(uow.session, self.lockout, self.key, self.now)
                if until is not None and user is not None:
                    row = uow.session.get(User, user.id, with_for_update=True)
                    if row is not None:
                        uow.accounts.lock(row, until, lockout.LOCK_REASON)
                        started = until
        return started

    def _fail(self, reason: str, user: User | None) -> LoginOutcome:
        self._record(reason, user, failure=True)
        return LoginOutcome(401, "invalidCredentials", INVALID)

    def _refuse(self, reason: str, user: User | None, status: int, code: str, message: str,
                locked_until: datetime | None = None) -> LoginOutcome:
        self._record(reason, user, failure=reason in lockout.FAILURES)
        return LoginOutcome(status, code, message, user_id=None, locked_until=locked_until)

    # -- the decision -------------------------------------------------------------------

    def run(self) -> LoginOutcome:
        if "\x00" in self.typed or "\x00" in (self.client_ip or ""):
            # No name or address holds one (no store keeps it in text): refused on every channel
            # before anything is read or recorded; no account's attempts are counted by it.
            return LoginOutcome(400, "invalidValue", "a user name or address cannot hold a NUL character")
        with self.ctx.services.store.read() as session:
            user = session.scalar(select(User).where(User.user_name_key == self.key)) if self.key else None
        refused = self._reserve(user)
        if refused is not None:
            return refused
        if not self.password:
            burn_verify(self.policy, "-")
            return self._fail("bad_password" if user else "unknown_user", user)
        if user is None:
            burn_verify(self.policy, self.password)
            return self._fail("unknown_user", None)
        checked = self._check_password(user)
        if checked is not None:
            return checked
        return self._after_password(user)

    def _check_password(self, user: User) -> LoginOutcome | None:
        """None when the password is right; else the answer (a failure, or the directory is away)."""
        if is_directory_user(user):
            from bridge.ldap.auth import DirectoryBusy, DirectoryUnavailable

            source_name = user.source.split(":", 1)[1]
            source = next((s for s in self.ctx.config.ldap.sources if s.name == source_name), None)
            if source is None:
                burn_verify(self.policy, self.password)
                log.warning("login of a user of an LDAP source that is not configured",
                            extra={"source": user.source})
                return self._fail("bad_password", user)
            try:
                ok = self.ctx.binder.verify(source, user.ldap_dn or "", self.password)
            except DirectoryBusy:  # no bind ran, no password was checked: not a failure
                burn_verify(self.policy, self.password)
                return self._refuse("directory_busy", user, 503, "directoryUnavailable",
                                    "the directory cannot be reached: try again later")
            except DirectoryUnavailable:
                burn_verify(self.policy, self.password)
                return self._refuse("directory_unavailable", user, 503, "directoryUnavailable",
                                    "the directory cannot be reached: try again later")
            if ok:
                return None
            # a refused bind is quick: the same argon2 work as a local or unknown name's
            # failure, so that the time of a failure does not tell directory users apart
            burn_verify(self.policy, self.password)
            return self._fail("bad_password", user)
        if user.password_hash is None:
            burn_verify(self.policy, self.password)
            return self._fail("no_password", user)
        if not verify_hash(self.policy, user.password_hash, self.password):
            return self._fail("bad_password", user)
        return None

    def _after_password(self, user: User) -> LoginOutcome:
        # Read only now that the password was right: a failure must not do more work for a
        # known name than for an unknown one.
        with self.ctx.services.store.read() as session:
            credential = session.get(TotpCredential, user.id)
        if user.lock_reason is not None and (user.locked_until is None or user.locked_until > self.now):
            expired = user.lock_reason == PASSWORD_EXPIRED
            return self._refuse(user.lock_reason, user, 423, "passwordExpired" if expired else "locked",
                                "the password has expired: ask an administrator to reset it" if expired
                                else "the account is locked", user.locked_until)
        if not user.active:
            return self._refuse("inactive", user, 403, "accountInactive", "the account is deactivated")
        if user.access_type == AccessType.api:
            return self._refuse("api_user", user, 403, "interactiveLoginRefused",
                                "this is an API account: it may not log in interactively")
        if not _ip_allowed(list(user.ip_allowlist or []), self.client_ip):
            return self._refuse("ip_not_allowed", user, 403, "ipNotAllowed",
                                "the account may not log in from this address")
        if not is_directory_user(user) and not user.must_change_password:
            expires_at = expiry(self.policy, user.password_changed_at or user.created_at).expires_at
            if expires_at is not None and expires_at <= self.now:
                with self.ctx.services.unit(self.actor) as uow:
                    row = uow.users.get(user.id)
                    uow.accounts.lock(row, None, PASSWORD_EXPIRED)
                return self._refuse(PASSWORD_EXPIRED, user, 423, "passwordExpired",
                                    "the password has expired: ask an administrator to reset it")
        enrolled = credential is not None and credential.confirmed_at is not None
        if enrolled and self.code is None:
            self._record("totp_required", user)
            return LoginOutcome(401, "totpRequired", "enter the code of your authenticator app (or a recovery "
                                "code)", flags={"totp_required": True})
        return self._succeed(user, enrolled)

    def _succeed(self, user: User, enrolled: bool) -> LoginOutcome:
        codes_left = None
        with self.ctx.services.unit(self.actor) as uow:
            row = uow.session.get(User, user.id, with_for_update=True)
            assert row is not None
            if enrolled:
                credential = uow.session.get(TotpCredential, user.id, with_for_update=True)
                assert credential is not None and self.code is not None
                if totp.looks_like_recovery_code(self.code):
                    accepted = uow.accounts.use_recovery_code(row, totp.hash_recovery_code(self.code),
                                                              now=self.now)
                    codes_left = uow.accounts.recovery_codes_left(row) if accepted else None
                else:
                    try:
                        secret = self.ctx.vault.open(credential.secret)
                    except SealBroken as exc:  # the operator dropped a key still in use: say so, refuse
                        log.error("login of %s: %s; run dirbridge totp reseal with the old key still "
                                  "configured", row.user_name, exc)
                        self._settle(uow, "totp_unavailable", row)  # no code was checked: not a failure
                        return LoginOutcome(503, "totpUnavailable", "the second factor cannot be checked now: "
                                            "try again later")
                    counter = totp.matching_counter(secret, self.code, self.now, credential.last_counter)
                    accepted = counter is not None
                    if counter is not None:
                        uow.accounts.accept_totp_counter(credential, counter)
                if not accepted:
                    return self._totp_failed(uow, row)
            if row.password_hash and not is_directory_user(row) and needs_rehash(self.policy, row.password_hash):
                uow.accounts.rehash(row, hash_password(self.policy, self.password))
            self._settle(uow, "ok", row)
            totp_missing = (self.ctx.config.policy.totp.required_for_admins and row.access_type == AccessType.admin
                            and not enrolled)
            return LoginOutcome(200, "ok", "logged in", user_id=row.id,
                                password_change_required=row.must_change_password,
                                totp_enrolment_required=totp_missing, recovery_codes_left=codes_left)

    def _totp_failed(self, uow, row: User) -> LoginOutcome:  # type: ignore[no-untyped-def]
        self._settle(uow, "bad_totp", row)
        until = lockout.account_locked_until(uow.session, self.lockout, self.key, self.now)
        if until is not None:
            uow.accounts.lock(row, until, lockout.LOCK_REASON)
        return LoginOutcome(401, "totpInvalid", "the code is wrong or was used already",
                            flags={"totp_required": True})


def login(ctx: AccountsContext, user_name: str, password: str, code: str | None = None,
          client_ip: str | None = None, **kwargs: object) -> LoginOutcome:
    """Decide one login attempt and record it."""
    return Login(ctx, user_name, password, code, client_ip, **kwargs).run()  # type: ignore[arg-type]
