"""The short cuts of the identity key and of the address check give the answers of the
long way (a bulk load meets them 100,000 times): ASCII names skip Unicode steps that
leave ASCII unchanged, and a common address is judged by its domain, checked once."""

from __future__ import annotations

import re
import unicodedata

import email_validator
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.names import _INVISIBLE, cleaned, identity_key
from bridge.services import addresses
from bridge.services.addresses import mail_address


def _cleaned_the_long_way(name: str) -> str:
    text = unicodedata.normalize("NFKC", name)
    text = _INVISIBLE.sub("", "".join(ch for ch in text if unicodedata.category(ch) != "Cf"))
    return re.sub(r"\s+", " ", text).strip()


def _key_the_long_way(name: str) -> str:
    return unicodedata.normalize("NFKC", _cleaned_the_long_way(name).casefold().replace("i\u0307", "i"))


@settings(max_examples=2000)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
@example(" John\t\x1c Doe\x0b")  # \x1c-\x1f are white space to Python too
@example("\x00\x7f")
@example("ALL CAPS   AND  TABS\t")
def test_an_ascii_name_gets_the_key_and_cleaned_form_of_the_long_way(name):
    assert identity_key(name) == _key_the_long_way(name)
    assert cleaned(name) == _cleaned_the_long_way(name)


@given(st.text(max_size=20))
@example("İstanbul")  # dotted capital I
@example("ｊｏｈｎ\u200bdoe")  # full width, zero-width space
def test_other_names_still_take_the_long_way(name):
    assert identity_key(name) == _key_the_long_way(name)


def _validator_says(text: str) -> str | None:
    addresses.accept_internal_mail_domains()
    try:
        email_validator.validate_email(text, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return None
    return text


ADDRESSES = [
    "u000001@example.org", "John.Doe@Example.COM", "a@b.c", "a@b.c1", "a@b", "x@localhost", "x@corp.local",
    "x@host.test", "x@site.invalid", "x@example.onion", ".a@b.org", "a.@b.org", "a..b@b.org", "a@-b.org",
    "a@b-.org", "a@b..org", "a@.b.org", "a@b.org.", "a b@b.org", "a@b@c.org", "a@[10.0.0.1]", "\"a\"@b.org",
    "a<b@c.org", "a@xn--nxasmq6b.com", "a@XN--nxasmq6b.com", "a@ab--cd.org", "postmaster@b.org",
    "o'brien+tag@b.org", "{x}|~@b.org", "a@" + "b" * 64 + ".org", "a@" + "b" * 63 + ".org",
    "a" * 64 + "@b.org", "a" * 65 + "@b.org", "a@" + ".".join(["b" * 60] * 4) + ".org",
    "a" * 200 + "@" + "b" * 49 + ".org", "a" * 201 + "@" + "b" * 49 + ".org", "a@b.123", "a@_b.org",
    "jörg@b.org", "a@bü.org", "a@b.org\n", "a@b.org\nBcc: c@d.org", "@b.org", "a@", "a",
    # within 254 characters as written, past 254 bytes once the Punycode domain is shown in UTF-8
    "a" * 196 + "@xn--fiqaaaaa996ubabbbb7005acacccc.com", "a" * 196 + "@XN--FIQAAAAA996UBABBBB7005ACACCCC.COM",
]


def test_listed_addresses_get_the_validators_answer():
    for text in ADDRESSES:
        assert mail_address(text) == _validator_says(text.strip()), text


_ADDRESS_PARTS = st.sampled_from(["a", "B", "0", ".", "-", "_", "+", "@", " ", "\"", "<", "xn--", "é", "ac",
                                  "org", "local", "test", "example", "invalid", "1", "b" * 30, "[", "]"])


@settings(max_examples=3000)
@given(st.lists(_ADDRESS_PARTS, min_size=1, max_size=14).map("".join))
@example("a@b.org")
def test_any_address_gets_the_validators_answer(text):
    expected = _validator_says(text.strip()) if text.strip() else None
    assert mail_address(text) == expected


def test_the_key_cache_keeps_names_a_store_could_hold_and_no_longer_ones():
    """userName keys are kept for the writes that ask again (a sync's batch asks for each
    name several times), but a client's megabyte-long 'userName' is not kept: it would
    stay, and 16,384 of them would be gigabytes."""
    from bridge.services import users

    users._cached_key.cache_clear()
    assert users.user_name_key(" Anna.Berg ") == "anna.berg"
    assert users.user_name_key("x" * 1_000_000) == "x" * 1_000_000
    assert users._cached_key.cache_info().currsize == 1
    names = [f"user{i}@example.org" for i in range(6000)]  # more than a write batch, asked twice
    for _ in range(2):
        for name in names:
            users.user_name_key(name)
    assert users._cached_key.cache_info().hits >= 6000
