"""What each kind of directory calls things: the attribute map of a preset.

A preset names the LDAP attributes dirbridge reads for each of its own fields,
the default filters, how a disabled account shows and which attribute orders
changes for the incremental sync. Every attribute can be overridden in the
source's ``attributes`` table; a key that is not one of the core fields below
adds an *extra* attribute, stored in the user's ``attributes`` under that key
for mapping rules to read (``attributes = { costCenter = "departmentNumber" }``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from bridge.config import LdapSourceConfig

#: The fields dirbridge itself reads; any other key of ``attributes`` is an extra attribute.
CORE_KEYS = (
    "unique_id",  # the entry's stable id: survives renames and moves
    "user_name",
    "display_name",
    "given_name",
    "family_name",
    "email",
    "disabled",  # an account-disabled flag; "" turns the check off
    "modified",  # the change marker of the incremental sync
    "group_name",  # a group's display name
    "member",  # a group's member DNs
)

ChangeMarker = Literal["timestamp", "csn", "usn"]

#: values per range asked for on AD: Windows' default MaxValRange. A server with a
#: smaller limit answers with a shorter range, and the walk goes on from its end.
RANGE_STEP = 1500


@dataclass(frozen=True)
class Preset:
    name: str
    users_filter: str
    groups_filter: str
    attributes: Mapping[str, str]
    extras: Mapping[str, str]
    #: extra member attributes read besides ``member`` (groupOfUniqueNames)
    other_member_attributes: tuple[str, ...] = ()
    #: objectGUID is binary and shown as a UUID; the others are text
    binary_unique_id: bool = False
    #: Active Directory hands out large groups' members in ranges
    range_retrieval: bool = False
    #: object classes and naming attribute of write-back entries
    writeback_user_classes: tuple[str, ...] = ("inetOrgPerson",)
    writeback_group_classes: tuple[str, ...] = ("groupOfNames",)
    writeback_user_rdn: str = "uid"
    #: whether a disabled account can be written back as such (else: removed)
    writeback_can_disable: bool = False


def _ro(mapping: dict[str, str]) -> Mapping[str, str]:
    return MappingProxyType(mapping)


#: what the inetOrgPerson family (OpenLDAP, 389-DS, FreeIPA) names alike; each preset adds its id,
#: lock and change-marker attributes
_INET_ORG_PERSON = {"user_name": "uid", "display_name": "displayName", "given_name": "givenName",
                    "family_name": "sn", "email": "mail", "group_name": "cn", "member": "member"}
_INET_ORG_PERSON_EXTRAS = {"department": "departmentNumber", "employeeNumber": "employeeNumber",
                           "employeeType": "employeeType", "title": "title"}
_NAMED_GROUPS = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"

PRESETS: Mapping[str, Preset] = MappingProxyType({
    "openldap": Preset(
        name="openldap",
        users_filter="(objectClass=inetOrgPerson)",
        groups_filter=_NAMED_GROUPS,
        attributes=_ro({**_INET_ORG_PERSON, "unique_id": "entryUUID", "disabled": "", "modified": "entryCSN"}),
        extras=_ro(_INET_ORG_PERSON_EXTRAS),
        other_member_attributes=("uniqueMember",),
    ),
    "active_directory": Preset(
        name="active_directory",
        users_filter="(&(objectCategory=person)(objectClass=user))",
        groups_filter="(objectClass=group)",
        attributes=_ro({
            "unique_id": "objectGUID", "user_name": "sAMAccountName", "display_name": "displayName",
            "given_name": "givenName", "family_name": "sn", "email": "mail",
            "disabled": "userAccountControl", "modified": "uSNChanged", "group_name": "cn", "member": "member",
        }),
        extras=_ro({"department": "department", "employeeNumber": "employeeNumber",
                    "employeeID": "employeeID", "title": "title", "company": "company",
                    "userPrincipalName": "userPrincipalName"}),
        binary_unique_id=True,
        range_retrieval=True,
        writeback_user_classes=("top", "person", "organizationalPerson", "user"),
        writeback_group_classes=("top", "group"),
        writeback_user_rdn="cn",
        writeback_can_disable=True,
    ),
    "389ds": Preset(
        name="389ds",
        users_filter="(objectClass=inetOrgPerson)",
        groups_filter=_NAMED_GROUPS,
        attributes=_ro({**_INET_ORG_PERSON, "unique_id": "nsUniqueId", "disabled": "nsAccountLock",
                        "modified": "modifyTimestamp"}),
        extras=_ro(_INET_ORG_PERSON_EXTRAS),
        other_member_attributes=("uniqueMember",),
        writeback_can_disable=True,
    ),
    "freeipa": Preset(
        name="freeipa",
        users_filter="(objectClass=posixAccount)",
        groups_filter="(objectClass=groupOfNames)",
        attributes=_ro({**_INET_ORG_PERSON, "unique_id": "ipaUniqueID", "disabled": "nsAccountLock",
                        "modified": "modifyTimestamp"}),
        extras=_ro(_INET_ORG_PERSON_EXTRAS),
        writeback_can_disable=True,
    ),
})


@dataclass(frozen=True)
class AttributeMap:
    """The resolved map of one source: preset defaults with the config's overrides."""

    preset: Preset
    core: Mapping[str, str]
    extras: Mapping[str, str]
    users_filter: str
    groups_filter: str
    marker: ChangeMarker = "timestamp"
    member_attributes: tuple[str, ...] = field(default=())

    def attr(self, key: str) -> str:
        return self.core[key]

    def user_attributes(self) -> list[str]:
        """The explicit attribute list of the user search (never ``*``: parsing costs)."""
        names = [self.core[k] for k in ("unique_id", "user_name", "display_name", "given_name",
                                        "family_name", "email", "disabled", "modified")]
        names.append("cn")  # the display name when display_name is absent (person's mandatory name)
        names += list(self.extras.values())
        return _unique(n for n in names if n)

    def group_attributes(self) -> list[str]:
        """On AD the members are asked for as a range (``member;range=0-1499``): Windows
        answers a plain ``member`` with its first range anyway, and Samba only hands out
        ranges when asked, so both servers go through the same range walk."""
        members = [f"{n};range=0-{RANGE_STEP - 1}" if self.preset.range_retrieval else n
                   for n in self.member_attributes]
        names = [self.core["unique_id"], self.core["group_name"], self.core["modified"], *members]
        return _unique(n for n in names if n)


def _unique(names: object) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:  # type: ignore[attr-defined]
        seen.setdefault(name, None)
    return list(seen)


def attribute_map(source: LdapSourceConfig) -> AttributeMap:
    preset = PRESETS[source.preset]
    core = dict(preset.attributes)
    extras = dict(preset.extras)
    for key, value in source.attributes.items():
        if key in CORE_KEYS:
            core[key] = value
        elif value:
            extras[key] = value
        else:
            extras.pop(key, None)  # "" removes an extra of the preset
    modified = core["modified"].lower()
    marker: ChangeMarker = "usn" if modified == "usnchanged" else "csn" if modified == "entrycsn" else "timestamp"
    member_attributes = _unique([core["member"], *preset.other_member_attributes])
    return AttributeMap(
        preset=preset,
        core=MappingProxyType(core),
        extras=MappingProxyType(extras),
        users_filter=source.users_filter or preset.users_filter,
        groups_filter=source.groups_filter or preset.groups_filter,
        marker=marker,
        member_attributes=tuple(member_attributes),
    )
