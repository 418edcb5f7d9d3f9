"""Errors of the accounts flows, mapped to HTTP like every ServiceError."""

from __future__ import annotations

from collections.abc import Sequence

from bridge.services.errors import ServiceError, ServiceUnavailable


class PasswordRejected(ServiceError):
    """The new password breaks the policy or was used recently; ``problems`` lists why."""

    status = 400
    code = "passwordPolicy"

    def __init__(self, problems: Sequence[str]):
        super().__init__("; ".join(problems), field="password")
        self.problems = list(problems)

    def in_language(self, lang: str) -> list[str]:
        """The problems in the user's language (each PolicyProblem knows how to say itself)."""
        return [p.in_language(lang) if hasattr(p, "in_language") else p for p in self.problems]


class LinkInvalid(ServiceError):
    """A mailed link cannot be used (any more): unknown (404), used, revoked or expired (410)."""

    status = 410
    code = "linkInvalid"

    def __init__(self, state: str, message: str):
        super().__init__(message, field="token")
        self.state = state
        if state == "unknown":
            self.status = 404


class InvitationInvalid(LinkInvalid):
    """The invitation link cannot be used (any more): unknown, used, revoked or expired."""

    code = "invitationInvalid"


class TotpInvalid(ServiceError):
    status = 400
    code = "totpInvalid"


class MailFailed(ServiceError):
    """The SMTP server did not take the mail; nothing was changed."""

    status = 502
    code = "mailFailed"


class TooManyRequests(ServiceError):
    """A rate limit was reached; ``retry_after`` seconds tell when to come back."""

    status = 429
    code = "tooManyRequests"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class DirectoryPasswordPolicy(ServiceError):
    """The directory refused the password: ``reason`` is its code (bridge.ldap.passwords),
    the message what it said, plainly."""

    status = 400
    code = "directoryPasswordPolicy"

    def __init__(self, reason: str, message: str):
        super().__init__(message, field="password")
        self.reason = reason


class DirectoryUnreachable(ServiceUnavailable):
    """No server of the user's directory answered: nothing was changed."""

    code = "directoryUnavailable"


class SelfServiceOff(ServiceError):
    """``[self_service] enabled = false``: users do nothing for themselves here."""

    status = 403
    code = "selfServiceDisabled"
