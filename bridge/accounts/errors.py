"""Errors of the accounts flows, mapped to HTTP like every ServiceError."""

from __future__ import annotations

from collections.abc import Sequence

from bridge.services.errors import ServiceError


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


class InvitationInvalid(ServiceError):
    """The invitation link cannot be used (any more): unknown, used, revoked or expired."""

    status = 410
    code = "invitationInvalid"

    def __init__(self, state: str, message: str):
        super().__init__(message, field="token")
        self.state = state
        if state == "unknown":
            self.status = 404


class TotpInvalid(ServiceError):
    status = 400
    code = "totpInvalid"


class MailFailed(ServiceError):
    """The SMTP server did not take the mail; nothing was changed."""

    status = 502
    code = "mailFailed"
