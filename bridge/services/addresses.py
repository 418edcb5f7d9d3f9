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
    text = value.strip()
    return text if _sendable(text) else None


@functools.lru_cache(maxsize=4096)
def _sendable(text: str) -> bool:
    """Whether email-validator takes ``text``: a function of the text alone, asked for the
    same address again and again (a SCIM write checks its e-mails in the SCIM layer and
    again in the service layer), so the answers of the latest addresses are kept."""
    accept_internal_mail_domains()
    try:
        email_validator.validate_email(text, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return False
    return True
