"""SCIM groups feed the mapping rules: a membership change over SCIM changes the user's
effective rights at the very next check (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from bridge.config import Config, load_config_data
from tests.fixtures.app import create_token
from tests.integration.test_scim_http import CORE, Scim


@pytest.fixture
def config() -> Config:
    return load_config_data({
        "roles": [{"name": "finance", "rights": ["invoices.approve"]}],
        "scopes": {"nodes": [{"id": "company_group:north"}, {"id": "pool:north-1", "parent": "company_group:north"}]},
        "mapping": {"rules": [{"source": "scim:entra", "group": "Finance", "role": "finance",
                               "scope": "company_group:north"}]},
    })


def allowed(client, headers, scope: str = "pool:north-1") -> bool:
    body = {"user": "carla@example.com", "right": "invoices.approve", "scope": scope}
    response = client.post("/api/v1/check", json=body, headers=headers)
    assert response.status_code == 200, response.json
    return response.json["allowed"]


def test_scim_membership_changes_rights_at_once(client, runtime, admin_headers):
    entra = Scim(client, create_token(runtime, "entra", "scim"))
    carla = entra.post("/Users", {"schemas": [CORE], "userName": "carla@example.com"}).json
    group = entra.post("/Groups", {"displayName": "Finance", "members": []}).json
    assert not allowed(client, admin_headers)

    entra.patch(f"/Groups/{group['id']}", [{"op": "Add", "path": "members", "value": [{"value": carla["id"]}]}])
    assert allowed(client, admin_headers)  # granted at company_group:north, so held in its pool
    assert not allowed(client, admin_headers, scope="instance")  # but not above it

    entra.patch(f"/Groups/{group['id']}", [{"op": "Remove", "path": f'members[value eq "{carla["id"]}"]'}])
    assert not allowed(client, admin_headers)


def test_a_rule_for_one_idp_ignores_another_idps_group_of_the_same_name(client, runtime, admin_headers):
    okta = Scim(client, create_token(runtime, "okta", "scim"))
    carla = okta.post("/Users", {"schemas": [CORE], "userName": "carla@example.com"}).json
    okta.post("/Groups", {"displayName": "Finance", "members": [{"value": carla["id"]}]})
    assert not allowed(client, admin_headers)
