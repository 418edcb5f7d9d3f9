"""What a caller may change on a user, a group or a customer, as typed keyword sets
(``update(user, **UserChanges)``): mypy checks every caller's field names and value
types, and the service still refuses an unknown name that comes in untyped (a JSON body,
a SCIM PATCH) with an error naming it."""

from __future__ import annotations

from typing import Any, TypedDict

from bridge.store.models import AccessType, GroupKind, UserKind


class UserChanges(TypedDict, total=False):
    user_name: str
    display_name: str | None
    given_name: str | None
    family_name: str | None
    email: str | None
    preferred_language: str | None
    timezone: str | None
    active: bool
    external_id: str | None
    source_id: str | None
    ldap_dn: str | None
    attributes: dict[str, Any]
    kind: UserKind | str
    access_type: AccessType | str
    customer_id: str | None
    customer_admin: bool
    ip_allowlist: list[Any]


class GroupChanges(TypedDict, total=False):
    display_name: str
    external_id: str | None
    source_id: str | None
    ldap_dn: str | None
    attributes: dict[str, Any]
    kind: GroupKind | str
    customer_id: str | None


class CustomerChanges(TypedDict, total=False):
    number: str
    name: str
    short_name: str | None
    remote_access: bool
    quota_mb: int | None
    agency: bool
    #: a customer number, or None: the service turns it into ``default_agency_id``
    default_agency: str | None
    default_agency_id: str | None
