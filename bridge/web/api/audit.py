"""/api/v1/audit: the audit log, searched (who changed what, through which channel, when).

Every change of every source is recorded (bridge.services.audit) and kept for
``audit.retention_days``; this is where it is read, newest first, a page at a time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from bridge.services.audit import AuditQuery, search
from bridge.store.models import AuditEvent
from bridge.web import runtime
from bridge.web.api.common import Page, PageQuery, make_blueprint, page_json

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, tzinfo=UTC)

bp = make_blueprint("api_audit", __name__, "audit", "The audit log: every change, who made it and how")


class AuditEventOut(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="who: a token, a user, an LDAP source's sync, a job")
    source: str = Field(description="the source it acted for: local, scim:CLIENT, ldap:SOURCE")
    channel: str = Field(description="the way in: scim, admin-api, cli, ldap-sync, status-page, import, startup ...")
    action: str = Field(description="user.create, user.update, login.failed, refused, conflict ...")
    target_type: str
    target_id: str | None
    target_name: str | None
    changes: dict[str, Any] = Field(description="field -> [before, after]; secrets shown as [redacted]")
    request_id: str | None = Field(description="the X-Request-Id of the request that made it")


class AuditPage(Page[AuditEventOut]):
    pass


class AuditSearch(PageQuery):
    actor: str | None = Field(default=None, max_length=256)
    source: str | None = Field(default=None, max_length=80, description="local, scim:CLIENT or ldap:SOURCE")
    channel: str | None = Field(default=None, max_length=32)
    action: str | None = Field(default=None, max_length=65, description="exact, or a prefix ending in * (user.*)")
    user: str | None = Field(default=None, max_length=256, description="a user's id or userName: events about them")
    since: AwareDatetime | None = Field(default=None, description="at or after (ISO 8601 with a time zone)")
    until: AwareDatetime | None = Field(default=None, description="before (ISO 8601 with a time zone)")

    @field_validator("since", "until")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        """A time the store can compare (years 1970 to 9998, in UTC)."""
        if value is not None and not EARLIEST <= value <= LATEST:
            raise ValueError("a time between 1970 and 9998")
        return value


def event_json(event: AuditEvent) -> dict[str, Any]:
    return AuditEventOut.model_validate(event, from_attributes=True).model_dump(mode="json")


@bp.get("/audit", responses={200: AuditPage}, summary="Search the audit log, newest first")
def search_audit(query: AuditSearch):  # type: ignore[no-untyped-def]
    wanted = AuditQuery(actor=query.actor, source=query.source, channel=query.channel, action=query.action,
                        user=query.user, since=query.since, until=query.until)
    with runtime().store.read() as session:
        total, rows = search(session, wanted, offset=query.offset, limit=query.limit)
        return page_json(query, total, [event_json(row) for row in rows])
