"""Setting passwords: the policy and the history are checked here, for every way a
password is set (invitation page, change at login, admin reset, a source's SCIM
``password``)."""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from bridge.accounts.context import AccountsContext
from bridge.accounts.errors import PasswordRejected
from bridge.accounts.passwords import (
    PolicyProblem,
    hash_password,
    names_of,
    policy_problems,
    temporary_password,
    verify_hash,
)
from bridge.gate import slot_released
from bridge.services import UnitOfWork
from bridge.store.models import User

# Hashes made before the request's transaction began (``hashed_ahead``): argon2 costs
# hundreds of milliseconds by design, and made inside a write transaction it holds the
# store's write lock that long for every password (a Bulk of 170 held it for 52 s).
_AHEAD: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("hashed_ahead", default=None)
MAX_AHEAD = 1000


@contextmanager
def hashed_ahead(ctx: AccountsContext, passwords: Iterable[str]) -> Iterator[None]:
    """Hash ``passwords`` now, outside any transaction, for ``set_new_password`` to use
    inside the one that follows (each hash once; a password not among them is hashed
    where it is set, as before)."""
    policy = ctx.config.policy.password
    ahead = {p: hash_password(policy, p) for p in list(dict.fromkeys(passwords))[:MAX_AHEAD]}
    token = _AHEAD.set(ahead)
    try:
        yield
    finally:
        _AHEAD.reset(token)


def _hash(ctx: AccountsContext, password: str) -> str:
    ahead = _AHEAD.get()
    made = ahead.pop(password, None) if ahead else None  # a salted hash serves one user only
    return made or hash_password(ctx.config.policy.password, password)


def reused(ctx: AccountsContext, uow: UnitOfWork, user: User, password: str) -> bool:
    """Whether ``password`` is one of the user's last ``history`` passwords."""
    policy = ctx.config.policy.password
    if policy.history <= 0:
        return False
    hashes = uow.accounts.recent_hashes(user, policy.history)
    if user.password_hash and user.password_hash not in hashes:
        hashes = [user.password_hash, *hashes[: policy.history - 1]]
    with slot_released():  # argon2's CPU, not the interpreter's: a hot-path slot is not needed (bridge.gate)
        return any(verify_hash(policy, h, password) for h in hashes)


def set_new_password(ctx: AccountsContext, uow: UnitOfWork, user: User, password: str) -> None:
    """The user chooses a password: it must pass the policy and not be a recent one."""
    policy = ctx.config.policy.password
    problems = policy_problems(policy, password, names_of(user.user_name, user.email))
    if not problems and reused(ctx, uow, user, password):
        problems.append(PolicyProblem("reused", history=policy.history))
    if problems:
        raise PasswordRejected(problems)
    uow.accounts.set_password(user, _hash(ctx, password), now=ctx.now(), must_change=False,
                              keep_history=policy.history)


def set_password_from_source(ctx: AccountsContext, uow: UnitOfWork, user: User, password: str) -> bool:
    """A password a source sends along with a user (SCIM's ``password``). Credentials belong
    to the user's owner: only a source the config lets set passwords (UnitOfWork.may_set_passwords),
    only for a user it owns or may take over (else 409), and then exactly as if the user had
    chosen it: policy, history, the configured hasher, never for a directory user. Returns
    False when the source may not set passwords at all (the caller leaves the value out)."""
    if not uow.may_set_passwords():
        return False
    uow.users.check_owner(user, "password")
    set_new_password(ctx, uow, user, password)
    return True


def reset_to_temporary(ctx: AccountsContext, uow: UnitOfWork, user: User) -> str:
    """An admin reset: a random temporary password, to be changed at the first login.
    The caller shows it once; only its hash is stored."""
    policy = ctx.config.policy.password
    temporary = temporary_password(policy)
    uow.accounts.set_password(user, hash_password(policy, temporary), now=ctx.now(), must_change=True,
                              keep_history=policy.history)
    return temporary


#: what an imported argon2 hash may cost at each login (dirbridge's own default: 64 MiB, 3 passes)
MAX_ARGON2_MEMORY_KIB, MAX_ARGON2_TIME, MAX_ARGON2_LANES = 262_144, 20, 16


def import_password_hash(uow: UnitOfWork, user: User, password_hash: str) -> str:
    """Keep a password hash brought from another system (bridge.accounts.imported): the user
    logs in with the password they had, and the first login replaces the hash with argon2id.
    Only the user's owner sets it (the operator for local users), never for a directory
    user (the directory checks those passwords); returns the scheme's name. The policy
    cannot judge a hash: it judges the next password the user chooses."""
    from argon2 import extract_parameters
    from argon2.exceptions import InvalidHashError

    from bridge.accounts.imported import scheme_of
    from bridge.services.accounts import is_directory_user
    from bridge.services.errors import Conflict, InvalidValue

    value = password_hash.strip() if isinstance(password_hash, str) else ""
    if is_directory_user(user):
        raise Conflict(f"{user.user_name!r} is a directory user: the directory checks the password",
                       field="password_hash")
    uow.users.check_owner(user, "password")
    if value.startswith("$argon2"):
        try:
            parameters = extract_parameters(value)
        except InvalidHashError:
            raise InvalidValue("password_hash: not a valid argon2 hash", field="password_hash") from None
        if (parameters.memory_cost > MAX_ARGON2_MEMORY_KIB or parameters.time_cost > MAX_ARGON2_TIME
                or parameters.parallelism > MAX_ARGON2_LANES):  # a login must not cost the server its memory
            raise InvalidValue(f"password_hash: an argon2 hash costing more than {MAX_ARGON2_MEMORY_KIB} KiB, "
                               f"{MAX_ARGON2_TIME} passes or {MAX_ARGON2_LANES} lanes", field="password_hash")
        name = value.split("$")[1]
    else:
        scheme = scheme_of(value)
        if scheme is None:
            raise InvalidValue("password_hash: not a hash dirbridge can check (argon2, bcrypt $2b$, PBKDF2 as "
                               "Django, passlib or 389-DS write it, or {SSHA}, {SSHA256}, {SSHA512})",
                               field="password_hash")
        name = scheme.name
    uow.accounts.set_password(user, value, now=uow.now(), must_change=False,
                              keep_history=uow.config.policy.password.history)
    return name
