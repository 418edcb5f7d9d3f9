"""Rules for everyone and rules on multi-valued attributes, through the check API: every
(internal) user gets the basic role at the top; an IdP's app roles (SCIM roles[].value)
and a directory's multi-valued attribute drive a role; explain names the rule."""

from __future__ import annotations

import pytest

from bridge.config import Config, load_config_data
from bridge.services import Actor
from tests.fixtures.app import create_token
from tests.integration.test_scim_http import CORE, Scim

RAW = {
    "roles": [{"name": "basic_user", "rights": ["orders.read"]},
              {"name": "planner", "rights": ["plans.write"]},
              {"name": "auditor", "rights": ["books.read"]}],
    "mapping": {"rules": [
        {"all_users": True, "of_kind": "internal", "role": "basic_user", "scope": "instance"},
        {"source": "scim", "attribute": "roles", "value": "Planner", "role": "planner"},
        {"source": "ldap:corp", "attribute": "memberships", "value": "audit", "role": "auditor"},
    ]},
}


@pytest.fixture
def config() -> Config:
    return load_config_data(RAW)


def check(client, headers, user: str, right: str, explain: bool = False):  # type: ignore[no-untyped-def]
    body = {"user": user, "right": right, "scope": "instance", "explain": explain}
    return client.post("/api/v1/check", json=body, headers=headers).json


def test_every_internal_user_gets_the_basic_role_and_explain_names_the_rule(client, admin_headers, runtime):
    with runtime.services.unit(Actor(name="test")) as uow:
        uow.users.create(user_name="plain.user", email="plain@example.org")
        customer = uow.customers.create(number="77", name="Ext", remote_access=True)
        uow.users.create(user_name="ext.user", email="ext@example.org", kind="external", customer_id=customer.id)
    assert check(client, admin_headers, "plain.user", "orders.read") == {"allowed": True}
    assert check(client, admin_headers, "ext.user", "orders.read") == {"allowed": False}  # of_kind internal
    explained = check(client, admin_headers, "plain.user", "orders.read", explain=True)
    assert explained["because"][0]["via"][-1] == {"type": "rule", "id": "1", "name": "every internal user"}
    # narrowed further by source: a rule for one IdP only
    with runtime.services.unit(Actor(name="test")) as uow:
        uow.users.update(uow.users.by_ref("ext.user"), kind="internal", customer_id=None)
    assert check(client, admin_headers, "ext.user", "orders.read") == {"allowed": True}  # its kind changed


def test_an_idps_app_roles_and_a_multi_valued_attribute_drive_rules(client, admin_headers, runtime):
    scim = Scim(client, create_token(runtime, "entra", "scim"))
    made = scim.post("/Users", {"schemas": [CORE], "userName": "app.role@example.com",
                                "roles": [{"value": "Viewer"}, {"value": "Planner", "primary": True}]})
    assert made.status_code == 201, made.json
    assert check(client, admin_headers, "app.role@example.com", "plans.write") == {"allowed": True}
    other = scim.post("/Users", {"schemas": [CORE], "userName": "no.role@example.com", "roles": [{"value": "Viewer"}]})
    assert other.status_code == 201
    assert check(client, admin_headers, "no.role@example.com", "plans.write") == {"allowed": False}

    with runtime.services.unit(Actor.ldap_sync("corp")) as uow:
        uow.users.create(user_name="dir.audit", source_id="d1", ldap_dn="uid=dir.audit,dc=x",
                         attributes={"memberships": ["staff", "Audit"]})
    assert check(client, admin_headers, "dir.audit", "books.read") == {"allowed": True}


def test_an_all_users_rule_gives_a_role_and_nothing_else():
    from bridge.config import ConfigError

    for bad, says in (({"all_users": True, "role": "x", "kind": "external"}, "an all_users rule gives a role"),
                      ({"all_users": True, "group": "G", "role": "x"}, "exactly one of"),
                      ({"group": "G", "role": "x", "of_kind": "internal"}, "of_kind narrows an all_users rule")):
        with pytest.raises(ConfigError) as raised:
            load_config_data({"mapping": {"rules": [bad]}})
        assert any(says in problem for problem in raised.value.problems), raised.value.problems
