"""The typed change sets (bridge/services/fields.py) name exactly the fields each service
accepts: a field added to one and not the other would be refused at run time or
unchecked by mypy."""

from __future__ import annotations

from bridge.services import customers, groups, users
from bridge.services.fields import CustomerChanges, GroupChanges, UserChanges


def test_the_typed_changes_match_what_the_services_accept() -> None:
    assert set(UserChanges.__annotations__) == users.WRITABLE_FIELDS
    assert set(GroupChanges.__annotations__) == set(groups.GROUP_FIELDS)
    assert set(CustomerChanges.__annotations__) == set(customers.FIELDS) | {"default_agency"}
