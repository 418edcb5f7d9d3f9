"""SCIM writes reach the LDAP write-back subtree once the request has committed (real slapd),
and a directory that refuses does not undo the SCIM change."""

from __future__ import annotations

import pytest

from bridge.config import Config, load_config_data
from bridge.ldap.dn import dn_key
from bridge.ldap.writeback import group_dn, user_dn
from tests.fixtures.app import create_token
from tests.fixtures.slapd import source_settings
from tests.integration.test_ldap_writeback import read as entry
from tests.integration.test_scim_http import CORE, Scim


@pytest.fixture
def tree(ldap_tree):
    base = ldap_tree.base
    ldap_tree.conn.add(f"ou=scim,{base}", ["organizationalUnit"], {"ou": "scim"})
    ldap_tree.conn.add(f"ou=people,ou=scim,{base}", ["organizationalUnit"], {"ou": "people"})
    ldap_tree.conn.add(f"ou=groups,ou=scim,{base}", ["organizationalUnit"], {"ou": "groups"})
    return ldap_tree


@pytest.fixture
def config(tree) -> Config:
    return load_config_data({"ldap": {"sources": [source_settings(
        tree.server, tree, users_base=tree.base, groups_base=tree.base,
        writeback={"enabled": True, "users_base": f"ou=people,ou=scim,{tree.base}",
                   "groups_base": f"ou=groups,ou=scim,{tree.base}"})]}})


def test_scim_users_groups_and_memberships_are_written_back(client, runtime, tree):
    source = runtime.config.ldap.sources[0]
    entra = Scim(client, create_token(runtime, "entra", "scim"))
    ada = entra.post("/Users", {"schemas": [CORE], "userName": "ada@example.com",
                                "name": {"givenName": "Ada", "familyName": "Lovelace"},
                                "emails": [{"value": "ada@example.com", "type": "work", "primary": True}]}).json
    bob = entra.post("/Users", {"schemas": [CORE], "userName": "bob@example.com"}).json
    assert entry(tree, user_dn(source, "ada@example.com"), "mail", "sn")["sn"] == ["Lovelace"]

    group = entra.post("/Groups", {"displayName": "Analysts", "members": [{"value": ada["id"]}]}).json
    members = entry(tree, group_dn(source, "Analysts"), "member")["member"]
    assert [dn_key(m) for m in members] == [dn_key(user_dn(source, "ada@example.com"))]

    entra.patch(f"/Groups/{group['id']}", [{"op": "Add", "path": "members", "value": [{"value": bob["id"]}]},
                                           {"op": "Remove", "path": f'members[value eq "{ada["id"]}"]'}])
    members = entry(tree, group_dn(source, "Analysts"), "member")["member"]
    assert [dn_key(m) for m in members] == [dn_key(user_dn(source, "bob@example.com"))]

    entra.patch(f"/Users/{ada['id']}", [{"op": "replace", "path": "userName", "value": "ada.l@example.com"}])
    assert entry(tree, user_dn(source, "ada@example.com")) is None
    assert entry(tree, user_dn(source, "ada.l@example.com")) is not None

    assert entra.delete(f"/Groups/{group['id']}").status_code == 204
    assert entry(tree, group_dn(source, "Analysts")) is None


def test_a_failed_bulk_operation_writes_nothing_back(client, runtime, tree):
    source = runtime.config.ldap.sources[0]
    entra = Scim(client, create_token(runtime, "entra", "scim"))
    entra.post("/Users", {"schemas": [CORE], "userName": "taken@example.com"})
    response = entra.post("/Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "a",
         "data": {"schemas": [CORE], "userName": "kept@example.com"}},
        {"method": "POST", "path": "/Users", "bulkId": "b",
         "data": {"schemas": [CORE], "userName": "TAKEN@example.com"}},
    ]})
    assert [op["status"] for op in response.json["Operations"]] == ["201", "409"]
    assert entry(tree, user_dn(source, "kept@example.com")) is not None
    # the refused operation wrote nothing: the first user's entry is as it was
    assert entry(tree, user_dn(source, "taken@example.com"), "uid")["uid"] == ["taken@example.com"]


def test_a_directory_that_is_down_does_not_undo_the_scim_change(client, runtime, tree, slapd):
    entra = Scim(client, create_token(runtime, "entra", "scim"))
    slapd.stop()
    try:
        created = entra.post("/Users", {"schemas": [CORE], "userName": "offline@example.com"})
    finally:
        slapd.start()
    assert created.status_code == 201
    assert entra.get(f"/Users/{created.json['id']}").status_code == 200
