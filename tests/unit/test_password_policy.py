"""The password policy, argon2id hashing and the lockout arithmetic, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.accounts import lockout, passwords, totp
from bridge.accounts.messages import language_for, render
from bridge.config import ConfigError, PasswordPolicy, load_config_data

FAST = {"hash_time_cost": 1, "hash_memory_kib": 8192, "hash_parallelism": 1}


def policy(**fields) -> PasswordPolicy:
    return PasswordPolicy(**{**FAST, **fields})


@pytest.mark.parametrize("password, problem", [
    ("Aa1-aaaaaaa", "at least 12 characters"),         # 11 characters
    ("abcdefghijkl", "at least 3 of"),                 # lower only
    ("abcdefghijK1", None),                            # lower, upper, digit
    ("abcdefghij-1", None),                            # lower, special, digit
    ("ABCDEFGHIJ K", "at least 3 of"),                 # upper, special (the space)
    ("Grüße-Jürgen", None),                            # non-ASCII letters count as letters
])
def test_length_and_criteria(password, problem):
    found = passwords.policy_problems(policy(), password)
    assert (problem is None and not found) or (problem is not None and any(problem in p for p in found)), found


def test_how_many_criteria_must_be_met_is_configurable():
    strict = policy(min_criteria=4)
    assert passwords.policy_problems(strict, "abcdefghijK1")
    assert not passwords.policy_problems(strict, "abcdefghiK1!")
    relaxed = policy(require_special=False, min_criteria=2, min_length=8)
    assert not passwords.policy_problems(relaxed, "abcdefg1")


@pytest.mark.parametrize("raw, expected", [
    ({"min_length": 7}, "min_length: Input should be greater than or equal to 8"),
    ({"history": 21}, "history: Input should be less than or equal to 20"),
    ({"require_upper": False, "require_lower": False}, "at least 3 of require_upper/lower/digit/special"),
    ({"require_special": False, "min_criteria": 4}, "min_criteria is 4 but only 3 criteria are enabled"),
    ({"hash_memory_kib": 1024}, "hash_memory_kib: Input should be greater than or equal to 8192"),
])
def test_the_policy_itself_is_checked(raw, expected):
    with pytest.raises(ConfigError) as info:
        load_config_data({"policy": {"password": raw}})
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_argon2id_hashes_verify_and_rehash_on_new_parameters():
    cheap = policy()
    hashed = passwords.hash_password(cheap, "Correct-Horse-7")
    assert hashed.startswith("$argon2id$")
    assert passwords.verify_hash(cheap, hashed, "Correct-Horse-7")
    assert not passwords.verify_hash(cheap, hashed, "Correct-Horse-8")
    assert not passwords.verify_hash(cheap, "not a hash", "Correct-Horse-7")
    assert not passwords.needs_rehash(cheap, hashed)
    assert passwords.needs_rehash(policy(hash_time_cost=2), hashed)


@given(st.integers(min_value=8, max_value=64), st.booleans())
def test_temporary_passwords_pass_their_policy(min_length, special):
    p = policy(min_length=min_length, require_special=special, min_criteria=3)
    assert not passwords.policy_problems(p, passwords.temporary_password(p))


def test_expiry_and_warning_dates():
    changed = datetime(2030, 1, 1, tzinfo=UTC)
    due = passwords.expiry(policy(max_age_days=90, warn_days=7), changed)
    assert due.expires_at == changed + timedelta(days=90) and due.warn_from == changed + timedelta(days=83)
    assert passwords.expiry(policy(), changed).expires_at is None


T0 = datetime(2030, 1, 1, tzinfo=UTC)
WINDOW, LOCK = timedelta(hours=24), timedelta(hours=24)


def events(*spec: tuple[float, str]) -> list[lockout.Event]:
    return [lockout.Event(T0 + timedelta(hours=h), kind) for h, kind in spec]  # type: ignore[arg-type]


def test_lock_after_max_failures_within_the_window():
    five = events(*[(h, "failure") for h in (0, 1, 2, 3, 4)])
    assert lockout.lock_end(five, 5, WINDOW, LOCK) == T0 + timedelta(hours=28)
    spread = events(*[(h, "failure") for h in (0, 10, 20, 30, 40)])
    assert lockout.lock_end(spread, 5, WINDOW, LOCK) is None
    reset = events((0, "failure"), (1, "failure"), (2, "reset"), (3, "failure"), (4, "failure"), (5, "failure"))
    assert lockout.lock_end(reset, 5, WINDOW, LOCK) is None


def test_attempts_during_a_lock_do_not_extend_it_and_a_reset_lifts_it():
    during = events(*[(h, "failure") for h in (0, 0, 0, 0, 0, 5, 6, 7, 8, 9)])
    assert lockout.lock_end(during, 5, WINDOW, LOCK) == T0 + LOCK
    lifted = events(*[(0, "failure")] * 5, (1, "reset"))
    assert lockout.lock_end(lifted, 5, WINDOW, LOCK) is None


@given(st.lists(st.tuples(st.floats(min_value=0, max_value=200), st.sampled_from(["failure", "reset"])),
                max_size=40))
def test_a_lock_never_outlasts_its_length_after_the_last_failure(raw):
    found = events(*sorted(raw))
    end = lockout.lock_end(found, 5, WINDOW, LOCK)
    failures = [e.at for e in found if e.kind == "failure"]
    if end is not None:
        assert failures and end <= max(failures) + LOCK and len(failures) >= 5


def test_totp_codes_match_within_one_step_and_never_twice():
    secret = totp.new_secret()
    now = datetime(2030, 1, 1, 12, 0, 10, tzinfo=UTC)
    current = totp.counter_at(now)
    for offset in (-1, 0, 1):
        code = totp.code_for(secret, current + offset)
        assert totp.matching_counter(secret, code, now, None) == current + offset
    assert totp.matching_counter(secret, totp.code_for(secret, current + 2), now, None) is None
    assert totp.matching_counter(secret, totp.code_for(secret, current), now, current) is None  # replay
    assert totp.matching_counter(secret, totp.code_for(secret, current - 1), now, current) is None  # older
    assert totp.matching_counter(secret, "12345", now, None) is None


def test_mails_pick_the_language_and_escape_html():
    assert language_for("de-AT", "en") == "de" and language_for("fr", "en") == "en" and language_for(None, "de") == "de"
    mail = render("invitation", "en", "x@example.org", name="<script>x</script>", user_name="eve",
                  link="https://h/invite?token=a&b", expires="2030-01-01", product="Portal")
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html
    assert "<script>x</script>" in mail.text  # plain text is not HTML


def test_problems_read_in_english_and_german():
    [problem] = passwords.policy_problems(policy(), "abcdefghijkl")
    assert problem.startswith("the password must contain at least 3 of:")
    german = problem.in_language("de")
    assert german.startswith("das Passwort muss mindestens 3 davon enthalten:")
    assert "einen Großbuchstaben" in german and "upper-case" not in german
