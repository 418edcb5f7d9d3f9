"""The password policy and argon2id hashing.

The policy is the portal's: a minimum length (never below 8), criteria (upper,
lower, digit, special; at least 3 enabled) of which a number must be met, a
history of the last N passwords that may not come back, and a maximum age.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bridge.config import PasswordPolicy

MAX_LENGTH = 1024  # argon2 takes any length; a bound keeps a request from costing too much
CRITERIA = ("upper", "lower", "digit", "special")
CRITERIA_WORDS = {
    "en": {"upper": "an upper-case letter", "lower": "a lower-case letter", "digit": "a digit",
           "special": "a special character"},
    "de": {"upper": "einen Großbuchstaben", "lower": "einen Kleinbuchstaben", "digit": "eine Ziffer",
           "special": "ein Sonderzeichen"},
}
PROBLEM_TEXT = {
    "en": {
        "too_short": "the password must have at least {min_length} characters",
        "too_long": "the password must have at most {max_length} characters",
        "criteria": "the password must contain at least {min_criteria} of: {criteria} (missing: {missing})",
        "reused": "the password was used recently: choose one that is not among the last {history}",
        "contains_name": "the password must not contain the user name or the e-mail address's name ({name})",
    },
    "de": {
        "too_short": "das Passwort muss mindestens {min_length} Zeichen haben",
        "too_long": "das Passwort darf höchstens {max_length} Zeichen haben",
        "criteria": "das Passwort muss mindestens {min_criteria} davon enthalten: {criteria} (es fehlt: {missing})",
        "reused": "das Passwort wurde kürzlich verwendet: wählen Sie eines, das nicht unter den letzten "
                  "{history} ist",
        "contains_name": "das Passwort darf weder den Benutzernamen noch den Namen der E-Mail-Adresse enthalten "
                         "({name})",
    },
}


class PolicyProblem(str):
    """What is wrong with a password. It reads as its English sentence (API answers, logs of
    the CLI) and says itself in the user's language for the pages (``in_language``)."""

    code: str
    values: dict[str, object]

    def __new__(cls, code: str, **values: object) -> PolicyProblem:
        problem = super().__new__(cls, cls._render("en", code, values))
        problem.code, problem.values = code, values
        return problem

    @staticmethod
    def _render(lang: str, code: str, values: dict[str, object]) -> str:
        words = CRITERIA_WORDS.get(lang, CRITERIA_WORDS["en"])
        shown = {k: (", ".join(words[c] for c in v) if isinstance(v, tuple) else v) for k, v in values.items()}
        return PROBLEM_TEXT.get(lang, PROBLEM_TEXT["en"])[code].format(**shown)

    def in_language(self, lang: str) -> str:
        return self._render(lang, self.code, self.values)


@lru_cache(maxsize=8)
def hasher_for(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)


def hasher(policy: PasswordPolicy) -> PasswordHasher:
    """The argon2id hasher with the configured cost."""
    return hasher_for(policy.hash_time_cost, policy.hash_memory_kib, policy.hash_parallelism)


def hash_password(policy: PasswordPolicy, password: str) -> str:
    return hasher(policy).hash(password)


def verify_hash(policy: PasswordPolicy, password_hash: str, password: str) -> bool:
    """Whether ``password`` matches; a malformed stored hash is simply no match. A hash
    imported from another system (bridge.accounts.imported) is checked by its scheme, and
    a mismatch then spends an argon2id verification too: a wrong password takes at least
    as long as against any other hash (longer by the imported scheme's own cost, which
    says that the user has not logged in since the migration)."""
    if not password_hash.startswith("$argon2"):
        from bridge.accounts.imported import verify

        matched = verify(password_hash, password)
        if not matched:
            burn_verify(policy, password)
        return matched
    try:
        return hasher(policy).verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(policy: PasswordPolicy, password_hash: str) -> bool:
    """Whether the hash was made with other parameters than the configured ones."""
    try:
        return hasher(policy).check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@lru_cache(maxsize=8)
def _dummy_hash(time_cost: int, memory_kib: int, parallelism: int) -> str:
    return hasher_for(time_cost, memory_kib, parallelism).hash(secrets.token_urlsafe(16))


def burn_verify(policy: PasswordPolicy, password: str) -> None:
    """Spend the time of one verification against a dummy hash: an unknown user
    answers as slowly as a wrong password."""
    verify_hash(policy, _dummy_hash(policy.hash_time_cost, policy.hash_memory_kib, policy.hash_parallelism),
                password)


def criteria_met(password: str) -> set[str]:
    met: set[str] = set()
    for char in password:
        if char.isupper():
            met.add("upper")
        elif char.islower():
            met.add("lower")
        elif char.isdigit():
            met.add("digit")
        else:  # anything that is not a letter or digit, white space included
            met.add("special")
    return met


def enabled_criteria(policy: PasswordPolicy) -> list[str]:
    flags = {"upper": policy.require_upper, "lower": policy.require_lower, "digit": policy.require_digit,
             "special": policy.require_special}
    return [c for c in CRITERIA if flags[c]]


# Names shorter than this are not looked for inside a password ("al" would refuse too much).
MIN_NAME_IN_PASSWORD = 3


def names_of(user_name: str | None, email: str | None) -> list[str]:
    """What a password may not contain: the userName and the e-mail's local part (Keycloak's
    notUsername and notEmail), compared case-insensitively."""
    names = [user_name or "", (email or "").rpartition("@")[0] if email and "@" in email else ""]
    return [n.strip() for n in names if len(n.strip()) >= MIN_NAME_IN_PASSWORD]


def policy_problems(policy: PasswordPolicy, password: str, names: list[str] | None = None) -> list[PolicyProblem]:
    """What is wrong with ``password`` under ``policy`` (empty: it passes), in words a user reads;
    ``names`` (names_of the user) may not appear in it."""
    problems: list[PolicyProblem] = []
    folded = password.casefold()
    for name in names or []:
        if name.casefold() in folded:
            problems.append(PolicyProblem("contains_name", name=name))
            break
    if len(password) < policy.min_length:
        problems.append(PolicyProblem("too_short", min_length=policy.min_length))
    if len(password) > MAX_LENGTH:
        problems.append(PolicyProblem("too_long", max_length=MAX_LENGTH))
    enabled = enabled_criteria(policy)
    met = criteria_met(password) & set(enabled)
    if len(met) < policy.min_criteria:
        problems.append(PolicyProblem("criteria", min_criteria=policy.min_criteria, criteria=tuple(enabled),
                                      missing=tuple(c for c in enabled if c not in met)))
    return problems


def temporary_password(policy: PasswordPolicy) -> str:
    """A random password that meets every enabled criterion (given to an admin once)."""
    length = max(policy.min_length, 16)
    pools = {"upper": string.ascii_uppercase, "lower": string.ascii_lowercase, "digit": string.digits,
             "special": "-_.!+#"}
    required = [secrets.choice(pools[c]) for c in CRITERIA]
    alphabet = "".join(pools.values())
    rest = [secrets.choice(alphabet) for _ in range(length - len(required))]
    chars = required + rest
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


@dataclass(frozen=True)
class Expiry:
    """When a password expires and when the warning is due (None: it never expires)."""

    expires_at: datetime | None
    warn_from: datetime | None


def expiry(policy: PasswordPolicy, changed_at: datetime | None) -> Expiry:
    if policy.max_age_days is None or changed_at is None:
        return Expiry(None, None)
    expires = changed_at + timedelta(days=policy.max_age_days)
    return Expiry(expires, expires - timedelta(days=policy.warn_days))
