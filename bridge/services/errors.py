"""Errors of the service layer. Each carries the HTTP status an adapter should answer
with and a short machine-readable code, so SCIM and the admin API map them the same way."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidValue(ServiceError):
    status = 400
    code = "invalidValue"


class NotFound(ServiceError):
    status = 404
    code = "notFound"


class Forbidden(ServiceError):
    """The actor may not do this at all (not: this value is wrong). Every refusal is also
    written to the audit log, after the refused transaction (bridge.services.Services.unit)."""

    status = 403
    code = "forbidden"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class UserNameTaken(Conflict):
    code = "uniqueness"


class GroupNameTaken(Conflict):
    """Another group of the same source has the displayName (case-insensitively)."""

    code = "uniqueness"


class SourceConflict(Conflict):
    """A source tried to change an identity owned by another source."""

    code = "sourceConflict"


class LastAdmin(Conflict):
    code = "lastAdmin"


class ServiceUnavailable(ServiceError):
    """Not now, but the same request may succeed later (answered with Retry-After)."""

    status = 503
    code = "unavailable"
    retry_after = 5


class VersionMismatch(ServiceError):
    status = 412
    code = "versionMismatch"
