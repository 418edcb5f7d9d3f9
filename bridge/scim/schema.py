"""What the SCIM service declares: resource types, schemas and capabilities.

Users carry the enterprise extension and dirbridge's portal extension (kind,
customer number, access type); the capabilities come from the config.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import Field
from scim2_models import (
    URN,
    AuthenticationScheme,
    Bulk,
    CaseExact,
    ChangePassword,
    Email,
    EnterpriseUser,
    ETag,
    Extension,
    Filter,
    Group,
    Manager,
    Pagination,
    Patch,
    Reference,
    Required,
    ResourceType,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    User,
)

from bridge.config import ScimConfig
from bridge.services.addresses import accept_internal_mail_domains

PORTAL_SCHEMA = "urn:dirbridge:params:scim:schemas:extension:portal:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


class Kind(enum.StrEnum):
    internal = "internal"
    external = "external"


class AccessTypeValue(enum.StrEnum):
    admin = "admin"
    backend = "backend"
    api = "api"


class PortalUser(Extension):
    """dirbridge's portal attributes of a user (the enums give the schema its canonicalValues)."""

    __schema__ = URN(PORTAL_SCHEMA)

    kind: Kind | None = None
    """internal (employees) or external (customer staff)."""

    customer_number: str | None = None
    """The number of the customer an external user belongs to. A number no customer has
    yet is kept, and the user joins the customer once an operator creates it."""

    access_type: AccessTypeValue | None = None
    """admin (every right), backend (rights by roles) or api (API only, no interactive login)."""


class OptionalRefManager(Manager):
    """The enterprise ``manager`` with ``value`` and ``$ref`` optional, as RFC 7643 §4.3 has
    them ("RECOMMENDED"): Entra ID and Microsoft's reference tests send the id alone."""

    value: Annotated[str | None, Required.false, CaseExact.true] = None
    ref: Annotated[Reference["User"] | None, Required.false] = Field(  # type: ignore[type-arg]  # noqa: UP037
        None, serialization_alias="$ref", validation_alias="$ref")


class Enterprise(EnterpriseUser):
    """The enterprise extension, with the manager above."""

    manager: OptionalRefManager | None = None


class StoredEmail(Email):
    """An e-mail as the IdP holds it: Microsoft's reference tests send ``"emailName357"``
    and expect it stored, so the value is any string here. The store keeps a value that
    is no address out of the user's e-mail column (bridge.services.users), and a local
    user still needs a real address there."""

    value: str | None = None


class CoreUser(User[Any]):
    """The core User, with the e-mails above."""

    emails: list[StoredEmail] | None = None  # type: ignore[assignment]


# pydantic keeps the subclass generic at run time; mypy sees CoreUser as bound to Any.
ScimUser = CoreUser[Enterprise | PortalUser]  # type: ignore[type-arg]


def build_provider(config: ScimConfig) -> ScimProvider:
    accept_internal_mail_domains()
    service_config = ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=True, max_operations=config.bulk_max_operations,
                  max_payload_size=config.bulk_max_payload_bytes),
        filter=Filter(supported=True, max_results=config.max_results),
        # Passwords are set only by the clients the config lets (bridge.accounts.credentials).
        change_password=ChangePassword(supported=any(c.passwords for c in config.clients.values())),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        # RFC 9865: startIndex stays the default; a client asks for cursors with cursor="" (or
        # the first page's nextCursor). scim2-server seals the positions StoreStorage gives.
        pagination=Pagination(cursor=True, index=True, default_pagination_method="index",
                              max_page_size=config.max_results, cursor_timeout=config.cursor_timeout),
        authentication_schemes=[AuthenticationScheme(
            type="oauthbearertoken", name="Bearer token",
            description="a per-client token made with 'dirbridge token create NAME'", primary=True)],
    )
    return ScimProvider(
        models=[CoreUser, Enterprise, PortalUser, Group],
        resource_types=[ResourceType.from_resource(ScimUser), ResourceType.from_resource(Group)],
        config=service_config,
    )
