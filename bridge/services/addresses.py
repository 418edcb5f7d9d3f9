"""E-mail addresses the portal can send to: the one check every source's writes go through.

email-validator checks the syntax (no white space, no second address, no header
line smuggled in with a newline) without asking DNS. It refuses special-use
domains, but Active Directory estates commonly live in ``corp.local`` and IdPs
send what the directory holds (Okta's own examples use ``@okta.local``), so
``.local`` and ``.test`` are accepted; email-validator documents its list of
such domains as the knob.
"""

from __future__ import annotations

import email_validator

INTERNAL_MAIL_DOMAINS = ("local", "test")


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
    try:
        email_validator.validate_email(text, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return None
    return text
