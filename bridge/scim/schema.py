"""What the SCIM service declares: resource types, schemas and capabilities.

Users carry the enterprise extension and dirbridge's portal extension (kind,
customer number, access type); the capabilities come from the config.
"""

from __future__ import annotations

import enum

from scim2_models import (
    URN,
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    EnterpriseUser,
    ETag,
    Extension,
    Filter,
    Group,
    Patch,
    ResourceType,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    User,
)

from bridge.config import ScimConfig

PORTAL_SCHEMA = "urn:dirbridge:params:scim:schemas:extension:portal:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


class Kind(str, enum.Enum):
    internal = "internal"
    external = "external"


class AccessTypeValue(str, enum.Enum):
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


ScimUser = User[EnterpriseUser | PortalUser]  # type: ignore[misc]


INTERNAL_MAIL_DOMAINS = ("local", "test")


def accept_internal_mail_domains() -> None:
    """Accept e-mail addresses in .local and .test domains.

    scim2-models validates e-mails with email-validator, which refuses
    special-use domains; but Active Directory estates commonly live in
    ``corp.local`` and IdPs send what the directory holds (Okta's own examples
    use ``@okta.local``). email-validator documents this list as the knob.
    """
    import email_validator

    for name in INTERNAL_MAIL_DOMAINS:
        if name in email_validator.SPECIAL_USE_DOMAIN_NAMES:
            email_validator.SPECIAL_USE_DOMAIN_NAMES.remove(name)


def build_provider(config: ScimConfig) -> ScimProvider:
    accept_internal_mail_domains()
    service_config = ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=True, max_operations=config.bulk_max_operations,
                  max_payload_size=config.bulk_max_payload_bytes),
        filter=Filter(supported=True, max_results=config.max_results),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        authentication_schemes=[AuthenticationScheme(
            type="oauthbearertoken", name="Bearer token",
            description="a per-client token made with 'dirbridge token create NAME'", primary=True)],
    )
    return ScimProvider(
        models=[User, EnterpriseUser, PortalUser, Group],
        resource_types=[ResourceType.from_resource(ScimUser), ResourceType.from_resource(Group)],
        config=service_config,
    )
