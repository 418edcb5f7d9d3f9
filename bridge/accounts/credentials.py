"""Setting passwords: the policy and the history are checked here, for every way a
password is set (invitation page, change at login, admin reset)."""

from __future__ import annotations

from bridge.accounts.context import AccountsContext
from bridge.accounts.errors import PasswordRejected
from bridge.accounts.passwords import (
    PolicyProblem,
    hash_password,
    policy_problems,
    temporary_password,
    verify_hash,
)
from bridge.services import UnitOfWork
from bridge.store.models import User


def reused(ctx: AccountsContext, uow: UnitOfWork, user: User, password: str) -> bool:
    """Whether ``password`` is one of the user's last ``history`` passwords."""
    policy = ctx.config.policy.password
    if policy.history <= 0:
        return False
    hashes = uow.accounts.recent_hashes(user, policy.history)
    if user.password_hash and user.password_hash not in hashes:
        hashes = [user.password_hash, *hashes[: policy.history - 1]]
    return any(verify_hash(policy, h, password) for h in hashes)


def set_new_password(ctx: AccountsContext, uow: UnitOfWork, user: User, password: str) -> None:
    """The user chooses a password: it must pass the policy and not be a recent one."""
    policy = ctx.config.policy.password
    problems = policy_problems(policy, password)
    if not problems and reused(ctx, uow, user, password):
        problems.append(PolicyProblem("reused", history=policy.history))
    if problems:
        raise PasswordRejected(problems)
    uow.accounts.set_password(user, hash_password(policy, password), now=ctx.now(), must_change=False,
                              keep_history=policy.history)


def reset_to_temporary(ctx: AccountsContext, uow: UnitOfWork, user: User) -> str:
    """An admin reset: a random temporary password, to be changed at the first login.
    The caller shows it once; only its hash is stored."""
    policy = ctx.config.policy.password
    temporary = temporary_password(policy)
    uow.accounts.set_password(user, hash_password(policy, temporary), now=ctx.now(), must_change=True,
                              keep_history=policy.history)
    return temporary
