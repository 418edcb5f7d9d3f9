"""Who is writing, and as which source: recorded in every audit event."""

from __future__ import annotations

from dataclasses import dataclass

LOCAL_SOURCE = "local"
SCIM_PREFIX = "scim:"
LDAP_PREFIX = "ldap:"


@dataclass(frozen=True)
class Actor:
    """``name`` is who acts (a token name, an operator, ``system``); ``source`` is the
    identity source it writes as (``local``, ``scim:entra``, ``ldap:corp``); ``channel``
    is the way in (``admin-api``, ``cli``, ``scim``, ``ldap-sync``, ``import``, ``job``)."""

    name: str
    source: str = LOCAL_SOURCE
    channel: str = "cli"
    request_id: str | None = None

    @classmethod
    def scim_client(cls, client: str, request_id: str | None = None) -> Actor:
        return cls(name=client, source=f"{SCIM_PREFIX}{client}", channel="scim", request_id=request_id)

    @classmethod
    def ldap_sync(cls, source_name: str) -> Actor:
        return cls(name=f"sync:{source_name}", source=f"{LDAP_PREFIX}{source_name}", channel="ldap-sync")

    @classmethod
    def system(cls, job: str) -> Actor:
        return cls(name="system", source=LOCAL_SOURCE, channel=f"job:{job}")
