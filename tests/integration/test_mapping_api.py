"""The mapping engine over HTTP (/api/v1) and the explain command (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from bridge.config import Config, load_config_data
from bridge.services import Actor
from tests.fixtures.app import run_cli

RAW = {
    "roles": [
        {"name": "basic_user", "rights": ["orders.read"]},
        {"name": "fleet_manager", "rights": ["users.manage"], "includes": ["basic_user"]},
    ],
    "scopes": {"nodes": [{"id": "company_group:north"}, {"id": "pool:north-1", "parent": "company_group:north"}]},
    "mapping": {"rules": [{"source": "scim", "group": "Fleet North", "role": "fleet_manager",
                           "scope": "company_group:north"}]},
}


@pytest.fixture
def config() -> Config:
    return load_config_data(RAW)


@pytest.fixture
def alice(runtime) -> str:
    with runtime.services.unit(Actor.scim_client("entra")) as uow:
        user = uow.users.create(user_name="alice.smith", email="alice@example.org")
        group = uow.groups.create("Fleet North")
        uow.groups.change_members(group, add_users=[user.id])
        return user.id


def test_check_answers_and_explains(client, admin_headers, alice):
    body = {"user": "alice.smith", "right": "orders.read", "scope": "pool:north-1"}
    assert client.post("/api/v1/check", json=body, headers=admin_headers).json == {"allowed": True}
    explained = client.post("/api/v1/check", json={**body, "explain": True}, headers=admin_headers).json
    assert explained["allowed"] is True
    assert explained["because"] == [{
        "via": [{"type": "user", "id": alice, "name": "alice.smith"},
                {"type": "group", "id": explained["because"][0]["via"][1]["id"], "name": "Fleet North",
                 "origins": ["source"]},
                {"type": "rule", "id": "1", "name": "scim group 'Fleet North'"}],
        "role": "fleet_manager", "includes": ["basic_user"], "scope": "company_group:north"}]
    denied = client.post("/api/v1/check", json={**body, "scope": "instance", "explain": True}, headers=admin_headers)
    assert denied.json == {"allowed": False, "because": []}


@pytest.mark.parametrize("body, status, field", [
    ({"user": "nobody", "right": "orders.read"}, 404, "user"),
    ({"user": "alice.smith", "right": "orders.read", "scope": "pool:atlantis"}, 404, "scope"),
    ({"user": "alice.smith"}, 422, "right"),
    ({"user": "alice.smith", "right": "x", "bogus": 1}, 422, "bogus"),
])
def test_check_errors_name_what_is_wrong(client, admin_headers, alice, body, status, field):
    response = client.post("/api/v1/check", json=body, headers=admin_headers)
    assert response.status_code == status and response.json["error"]["field"] == field


def test_check_wants_an_admin_token(client, scim_headers, alice):
    body = {"user": "alice.smith", "right": "orders.read"}
    assert client.post("/api/v1/check", json=body, headers=scim_headers).status_code == 401


def test_rights_lists_the_effective_rights_at_a_scope(client, admin_headers, alice):
    response = client.get(f"/api/v1/users/{alice}/rights?scope=pool:north-1", headers=admin_headers)
    assert response.json == {"user_id": alice, "user_name": "alice.smith", "scope": "pool:north-1",
                             "rights": ["orders.read", "users.manage"]}
    assert client.get("/api/v1/users/alice.smith/rights", headers=admin_headers).json["rights"] == []


def test_roles_grants_and_scopes_through_the_api_reach_the_next_check(client, admin_headers, alice):
    def post(path, body):
        return client.post(path, json=body, headers=admin_headers)

    created = post("/api/v1/roles", {"name": "reporter", "rights": ["reports.read"], "includes": ["basic_user"]})
    assert created.status_code == 201 and created.json["effective_rights"] == ["orders.read", "reports.read"]
    assert post("/api/v1/scopes", {"id": "pool:north-2", "parent": "company_group:north"}).status_code == 201
    granted = post("/api/v1/grants", {"role": "reporter", "scope": "pool:north-2", "user": "alice.smith"})
    assert granted.status_code == 201
    assert post("/api/v1/grants", {"role": "reporter", "scope": "pool:north-2", "user": alice}).status_code == 200
    check = {"user": alice, "right": "reports.read", "scope": "pool:north-2"}
    assert post("/api/v1/check", check).json == {"allowed": True}
    assert client.delete(f"/api/v1/grants/{granted.json['id']}", headers=admin_headers).status_code == 204
    assert post("/api/v1/check", check).json == {"allowed": False}
    assert post("/api/v1/user-rights", {"user": alice, "right": "reports.read", "scope": "instance"}).status_code == 201
    assert post("/api/v1/check", check).json == {"allowed": True}
    copy = post("/api/v1/roles/reporter/copy", {"name": "reporter2"})
    assert copy.status_code == 201 and copy.json["rights"] == ["reports.read"]


@pytest.mark.parametrize("method, path, body, status, code", [
    ("patch", "/api/v1/roles/basic_user", {"includes": ["fleet_manager"]}, 409, "configOwned"),
    ("patch", "/api/v1/roles/nope", {"rights": []}, 404, "notFound"),
    ("post", "/api/v1/grants", {"role": "nope", "user": "alice.smith"}, 404, "notFound"),
    ("post", "/api/v1/grants", {"role": "basic_user", "scope": "pool:nope", "user": "alice.smith"}, 404, "notFound"),
    ("post", "/api/v1/grants", {"role": "basic_user"}, 422, "invalidValue"),
    ("post", "/api/v1/scopes", {"id": "company_group:x", "parent": "pool:north-1"}, 400, "invalidValue"),
    ("delete", "/api/v1/scopes/company_group:north", None, 409, "configOwned"),
    ("delete", "/api/v1/scopes/instance", None, 409, "conflict"),
])
def test_mapping_errors_are_clear(client, admin_headers, alice, method, path, body, status, code):
    response = getattr(client, method)(path, json=body, headers=admin_headers)
    assert response.status_code == status and response.json["error"]["code"] == code, response.json


def test_a_role_cycle_is_a_409_naming_the_cycle(client, admin_headers):
    client.post("/api/v1/roles", json={"name": "one"}, headers=admin_headers)
    client.post("/api/v1/roles", json={"name": "two", "includes": ["one"]}, headers=admin_headers)
    response = client.patch("/api/v1/roles/one", json={"includes": ["two"]}, headers=admin_headers)
    assert response.status_code == 409 and response.json["error"]["code"] == "roleCycle"
    assert "one -> two -> one" in response.json["error"]["message"]


def test_customers_through_the_api(client, admin_headers):
    def call(method, path, body=None):
        return getattr(client, method)(path, json=body, headers=admin_headers)

    created = call("post", "/api/v1/customers", {"number": "12345", "name": "Heidelberg", "remote_access": True})
    assert created.status_code == 201 and created.json["rights_group"]["name"] == "X12345-Heidelberg"
    user = call("post", "/api/v1/users", {"user_name": "anna.extern", "email": "anna@example.org",
                                          "kind": "external", "customer_id": created.json["id"]}).json
    assert call("get", "/api/v1/customers/12345").json["external_users"] == 1
    off = call("patch", "/api/v1/customers/12345", {"remote_access": False})
    assert off.status_code == 200 and call("get", f"/api/v1/users/{user['id']}").json["active"] is False
    assert call("delete", "/api/v1/customers/12345/external-users").status_code == 400
    assert call("delete", "/api/v1/customers/12345/external-users?confirm=true").json == {"deleted": 1}
    assert call("delete", "/api/v1/customers/12345").status_code == 400
    assert call("delete", "/api/v1/customers/12345?confirm=true").status_code == 204
    assert call("get", "/api/v1/customers/12345").status_code == 404


def test_the_openapi_document_describes_check(client):
    doc = client.get("/api/v1/openapi.json").json
    assert {"/api/v1/check", "/api/v1/users/{user_id}/rights", "/api/v1/roles", "/api/v1/scopes",
            "/api/v1/customers", "/api/v1/grants"} <= set(doc["paths"])


def test_explain_on_the_command_line(runtime, alice, tmp_path):
    config = tmp_path / "dirbridge.toml"
    roles = "\n".join(f'[[roles]]\nname = "{r["name"]}"\nrights = {r["rights"]!r}\nincludes = {r.get("includes", [])!r}'
                      .replace("'", '"') for r in RAW["roles"])
    config.write_text(f'data_dir = "{tmp_path}"\n[database]\nurl = "{runtime.store.url}"\n'
                      '[[scopes.nodes]]\nid = "company_group:north"\n'
                      '[[scopes.nodes]]\nid = "pool:north-1"\nparent = "company_group:north"\n'
                      '[[mapping.rules]]\nsource = "scim"\ngroup = "Fleet North"\nrole = "fleet_manager"\n'
                      f'scope = "company_group:north"\n{roles}\n')
    allowed = run_cli("explain", "alice.smith", "orders.read", "pool:north-1", "--config", str(config), cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.splitlines() == [
        "ALLOWED: alice.smith has orders.read at pool:north-1, because:",
        "  1. alice.smith -> group 'Fleet North' (source) -> mapping rule #1 (scim group 'Fleet North') "
        "-> role fleet_manager -> included role basic_user -> at company_group:north",
    ]
    denied = run_cli("explain", "alice.smith", "orders.read", "instance", "--config", str(config), cwd=tmp_path)
    assert denied.returncode == 0 and denied.stdout.startswith("DENIED: alice.smith does not have orders.read")
    unknown = run_cli("explain", "nobody", "orders.read", "--config", str(config), cwd=tmp_path)
    assert unknown.returncode == 1 and "no user 'nobody'" in unknown.stderr


def test_a_role_is_renamed_and_its_grants_and_includes_follow(client, admin_headers, alice):
    def call(method, path, body=None):  # type: ignore[no-untyped-def]
        return getattr(client, method)(path, json=body, headers=admin_headers)

    assert call("post", "/api/v1/roles", {"name": "viewer", "rights": ["reports.read"]}).status_code == 201
    assert call("post", "/api/v1/roles", {"name": "lead", "includes": ["viewer"]}).status_code == 201
    assert call("post", "/api/v1/grants", {"role": "viewer", "user": "alice.smith"}).status_code == 201
    check = {"user": "alice.smith", "right": "reports.read", "scope": "instance"}
    assert call("post", "/api/v1/check", check).json == {"allowed": True}

    renamed = call("patch", "/api/v1/roles/viewer", {"name": "reader"})
    assert renamed.status_code == 200 and renamed.json["name"] == "reader"
    assert call("get", "/api/v1/roles/viewer").status_code == 404
    assert call("get", "/api/v1/roles/lead").json["includes"] == ["reader"]
    assert call("post", "/api/v1/check", check).json == {"allowed": True}  # the grant followed
    explained = call("post", "/api/v1/check", {**check, "explain": True}).json
    assert explained["because"][0]["role"] == "reader"
    assert [e["action"] for e in call("get", "/api/v1/audit?action=role.rename").json["items"]] == ["role.rename"]

    for name, body, status, code in (
            ("basic_user", {"name": "base"}, 409, "configOwned"),  # declared in the config
            ("lead", {"name": "reader"}, 409, "conflict"),  # taken
            ("lead", {"name": "bad name!"}, 400, "invalidValue")):
        refused = call("patch", f"/api/v1/roles/{name}", body)
        assert (refused.status_code, refused.json["error"]["code"]) == (status, code), refused.json
    assert call("post", "/api/v1/roles", {"name": "ruled"}).status_code == 201


def test_a_role_a_config_rule_gives_keeps_its_name(client, admin_headers, runtime):
    from bridge.config import MappingRule

    rules = [MappingRule(source="scim", group="Readers", role="ruled", scope="instance")]
    runtime.config = runtime.services.config = runtime.config.model_copy(
        update={"mapping": runtime.config.mapping.model_copy(update={"rules": rules})})
    assert client.post("/api/v1/roles", json={"name": "ruled"}, headers=admin_headers).status_code == 201
    refused = client.patch("/api/v1/roles/ruled", json={"name": "other"}, headers=admin_headers)
    assert refused.status_code == 409 and "mapping rule #1" in refused.json["error"]["message"]


def test_one_sales_rep_is_assigned_to_several_customers_at_once(client, admin_headers, runtime):
    for number in ("501", "502", "503"):
        assert client.post("/api/v1/customers", json={"number": number, "name": f"Kunde {number}",
                                                      "remote_access": True}, headers=admin_headers).status_code == 201
    rep = client.post("/api/v1/users", json={"user_name": "rita.sales", "email": "rita@example.org"},
                      headers=admin_headers).json
    with runtime.services.unit(Actor(name="test")) as uow:
        sales = uow.customers.portal_group(runtime.config.customers.sales_group)
        uow.groups.change_members(sales, add_users=[rep["id"]], check_ownership=False)
    done = client.post("/api/v1/sales-representatives/rita.sales/customers", json={"customers": ["501", "502"]},
                       headers=admin_headers)
    assert done.status_code == 200 and done.json == {"user": "rita.sales", "customers": ["501", "502"], "added": 2}
    again = client.post("/api/v1/sales-representatives/rita.sales/customers", json={"customers": ["502", "999"]},
                        headers=admin_headers)
    assert again.status_code == 404 and again.json["error"]["message"].startswith("999:")  # all or nothing
    assert client.post("/api/v1/sales-representatives/rita.sales/customers", json={"customers": ["503"]},
                       headers=admin_headers).json["customers"] == ["501", "502", "503"]
