"""E-mail addresses the portal can send to: the one check every source's writes go through.

email-validator checks the syntax (no white space, no second address, no header
line smuggled in with a newline) without asking DNS. It refuses special-use
domains, but Active Directory estates commonly live in ``corp.local`` and IdPs
send what the directory holds (Okta's own examples use ``@okta.local``), so
``.local`` and ``.test`` are accepted; email-validator documents its list of
such domains as the knob.
"""

from __future__ import annotations

import functools
import re

import email_validator

INTERNAL_MAIL_DOMAINS = ("local", "test")
#: email-validator's dot-atom of the part before the @-sign (RFC 5322 3.2.3), all ASCII
_ASCII_LOCAL_PART = re.compile(r"[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+)*\Z")
#: the longest address email-validator accepts
_MAX_ADDRESS = 254


def accept_internal_mail_domains() -> None:
    """Accept addresses in .local and .test domains (idempotent)."""
    for name in INTERNAL_MAIL_DOMAINS:
        if name in email_validator.SPECIAL_USE_DOMAIN_NAMES:
            email_validator.SPECIAL_USE_DOMAIN_NAMES.remove(name)


def mail_address(value: str | None) -> str | None:
    """``value`` stripped when it is one address mail can be sent to, else None."""
    if not value or not value.strip():
        return None
    accept_internal_mail_domains()
    text = value.strip()
    local, at, domain = text.partition("@")
    if (text.isascii() and at and _ASCII_LOCAL_PART.match(local) and "xn--" not in domain.lower()
            and len(text) <= _MAX_ADDRESS):
        # The common address: email-validator's verdict on it is its verdict on the domain
        # (and the length, checked here), so each domain is validated once (a directory's
        # 100,000 users share a handful). A second "@" lands in the domain, which refuses it.
        return text if _domain_accepted(domain) else None
    return text if _valid(text) else None


def _valid(text: str) -> bool:
    try:
        email_validator.validate_email(text, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return False
    return True


@functools.lru_cache(maxsize=4096)
def _domain_accepted(domain: str) -> bool:
    """Whether email-validator accepts an address at ``domain`` (in ASCII, no Punycode):
    asked with the shortest part before the @-sign, which passes every check of its own."""
    return _valid("a@" + domain)
