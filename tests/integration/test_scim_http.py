"""/scim/v2 over HTTP (the app's WSGI stack), on SQLite and PostgreSQL: RFC 7644 behaviour
a client relies on, errors that change nothing, and the source rules."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from bridge.store.models import AuditEvent, User
from tests.fixtures.app import create_token

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PORTAL = "urn:dirbridge:params:scim:schemas:extension:portal:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"


class Scim:
    """A SCIM client on the Flask test client."""

    def __init__(self, client, token: str):
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}

    def request(self, method: str, path: str, body=None, headers=None):
        data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        return self.client.open(f"/scim/v2{path}", method=method, data=data,
                                headers={**self.headers, **(headers or {})})

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body, **kw):
        return self.request("PUT", path, body, **kw)

    def patch(self, path, operations, **kw):
        return self.request("PATCH", path, {"schemas": [PATCH], "Operations": operations}, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def create_user(self, user_name: str, **attributes):
        response = self.post("/Users", {"schemas": [CORE], "userName": user_name, **attributes})
        assert response.status_code == 201, response.json
        return response.json


def scim_for(client, runtime, name: str) -> Scim:
    """A SCIM client with a token of its own, named ``name`` (its source is scim:NAME)."""
    return Scim(client, create_token(runtime, name, "scim"))


@pytest.fixture
def scim(client, runtime):
    return scim_for(client, runtime, "entra")


def user_rows(runtime) -> int:
    with runtime.store.read() as session:
        return session.scalar(select(func.count()).select_from(User))


# -- authentication -------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer nope", "Basic ZW50cmE6eA=="])
def test_requests_without_a_valid_token_get_401_with_a_scim_error(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/scim/v2/Users", headers=headers)
    assert response.status_code == 401
    assert response.json["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert response.json["status"] == "401"


def test_an_admin_token_is_not_a_scim_token(client, admin_headers):
    assert client.get("/scim/v2/Users", headers=admin_headers).status_code == 401


def test_a_revoked_token_is_refused(client, runtime):
    scim = Scim(client, create_token(runtime, "okta", "scim"))
    assert scim.get("/Users").status_code == 200
    with runtime.services.unit(__import__("bridge.services", fromlist=["Actor"]).Actor("t")) as uow:
        uow.tokens.revoke("okta")
    assert scim.get("/Users").status_code == 401


def test_discovery_endpoints(scim, client):
    config = client.get("/scim/v2/ServiceProviderConfig").json  # no token needed (RFC 7643 §5)
    assert config["patch"]["supported"] and config["bulk"]["supported"] and config["etag"]["supported"]
    assert config["filter"]["maxResults"] == 1000 and config["sort"]["supported"]
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = {t["id"]: t for t in scim.get("/ResourceTypes").json["Resources"]}
    assert {e["schema"] for e in types["User"]["schemaExtensions"]} == {ENTERPRISE, PORTAL}
    schemas = {s["id"] for s in scim.get("/Schemas").json["Resources"]}
    assert {CORE, ENTERPRISE, PORTAL, "urn:ietf:params:scim:schemas:core:2.0:Group"} <= schemas


# -- resources ------------------------------------------------------------------------


def test_create_read_replace_delete_with_meta_and_content_type(scim):
    created = scim.post("/Users", {"schemas": [CORE, ENTERPRISE, PORTAL], "userName": "bjensen@example.com",
                                   "name": {"givenName": "Barbara", "familyName": "Jensen"},
                                   "emails": [{"value": "bjensen@example.com", "type": "work", "primary": True}],
                                   ENTERPRISE: {"department": "Sales", "employeeNumber": "701984"},
                                   PORTAL: {"kind": "internal", "accessType": "backend"}})
    assert created.status_code == 201
    assert created.headers["Content-Type"].startswith("application/scim+json")
    user = created.json
    assert created.headers["Location"] == user["meta"]["location"]
    assert user["meta"]["location"].endswith(f"/scim/v2/Users/{user['id']}")
    assert user["meta"]["created"] == user["meta"]["lastModified"] and user["meta"]["version"] == 'W/"1"'
    assert user[ENTERPRISE] == {"department": "Sales", "employeeNumber": "701984"}
    assert user[PORTAL] == {"kind": "internal", "accessType": "backend"}

    fetched = scim.get(f"/Users/{user['id']}")
    assert fetched.status_code == 200 and fetched.headers["ETag"] == 'W/"1"'

    replaced = scim.put(f"/Users/{user['id']}", {"schemas": [CORE], "userName": "bjensen@example.com",
                                                 "displayName": "Babs"})
    assert replaced.status_code == 200
    assert replaced.json["displayName"] == "Babs" and "name" not in replaced.json
    assert replaced.json["meta"]["version"] == 'W/"2"'

    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    assert scim.get(f"/Users/{user['id']}").status_code == 404


def test_etags_guard_writes(scim):
    user = scim.create_user("etag@example.com")
    path = f"/Users/{user['id']}"
    assert scim.get(path, headers={"If-None-Match": 'W/"1"'}).status_code == 304
    ok = scim.patch(path, [{"op": "replace", "path": "displayName", "value": "A"}], headers={"If-Match": 'W/"1"'})
    assert ok.status_code in (200, 204)
    stale = scim.patch(path, [{"op": "replace", "path": "displayName", "value": "B"}], headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert scim.delete(path, headers={"If-Match": 'W/"1"'}).status_code == 412
    assert scim.get(path).json["displayName"] == "A"


def test_patch_operations(scim):
    user = scim.create_user("patchy@example.com", emails=[
        {"value": "patchy@example.com", "type": "work", "primary": True},
        {"value": "patchy@home.example.org", "type": "home"}])
    path = f"/Users/{user['id']}"
    response = scim.patch(path, [
        {"op": "add", "path": "phoneNumbers", "value": [{"value": "+49 6221 1", "type": "work"}]},
        {"op": "replace", "path": 'emails[type eq "home"].value', "value": "p@home.example.org"},
        {"op": "remove", "path": 'emails[type eq "work"]'},
        {"op": "replace", "value": {"name.familyName": "Patch", f"{ENTERPRISE}:department": "R&D"}},
    ])
    assert response.status_code in (200, 204), response.json
    after = scim.get(path).json
    assert after["emails"] == [{"value": "p@home.example.org", "type": "home"}]
    assert after["phoneNumbers"] == [{"value": "+49 6221 1", "type": "work"}]
    assert after["name"] == {"familyName": "Patch"} and after[ENTERPRISE] == {"department": "R&D"}


def test_filters_sorting_paging_and_projection(scim):
    for name, dept, active in [("anna@example.com", "Sales", True), ("bert@example.com", "Sales", False),
                               ("carl@example.com", "IT", True), ("dora@example.com", "IT", True)]:
        scim.create_user(name, active=active, emails=[{"value": name, "type": "work"}],
                         **{ENTERPRISE: {"department": dept}})
    listing = scim.get(f'/Users?filter={ENTERPRISE}:department eq "it" or active eq false'
                       "&sortBy=userName&sortOrder=descending&startIndex=2&count=2"
                       "&attributes=userName")
    body = listing.json
    assert body["totalResults"] == 3 and body["startIndex"] == 2 and body["itemsPerPage"] == 2
    assert [u["userName"] for u in body["Resources"]] == ["carl@example.com", "bert@example.com"]
    assert set(body["Resources"][0]) == {"id", "userName", "schemas"}
    complex_filter = scim.get('/Users?filter=emails[type eq "work" and value co "@EXAMPLE.com"]'
                              ' and not (userName sw "a")')
    assert complex_filter.json["totalResults"] == 3
    excluded = scim.get('/Users?filter=userName eq "anna@example.com"&excludedAttributes=emails,meta')
    assert "emails" not in excluded.json["Resources"][0] and "meta" not in excluded.json["Resources"][0]


@pytest.mark.parametrize("query, scim_type", [
    ("filter=userName eq", "invalidFilter"),
    ("filter=nosuchattribute eq 1", "invalidFilter"),
    ("sortBy=nosuch", "invalidPath"),
])
def test_bad_queries_get_400_with_scim_type(scim, query, scim_type):
    response = scim.get(f"/Users?{query}")
    assert response.status_code == 400
    assert response.json["scimType"] == scim_type


@pytest.mark.parametrize("body, status, scim_type", [
    ("{not json", 400, "invalidSyntax"),
    ({"schemas": [CORE], "userName": ["x@example.com"]}, 400, None),
    ({"schemas": [CORE]}, 400, None),
    ({"schemas": [CORE], "userName": "x@example.com", PORTAL: {"accessType": "root"}}, 400, None),
])
def test_bad_bodies_get_rfc_errors_and_change_nothing(scim, runtime, body, status, scim_type):
    response = scim.post("/Users", body)
    assert response.status_code == status, response.json
    assert response.json["status"] == str(status)
    if scim_type:
        assert response.json["scimType"] == scim_type
    assert user_rows(runtime) == 0


def test_oversized_request_is_413(scim, runtime):
    blob = "x" * (2 * 1048576)
    response = scim.post("/Users", {"schemas": [CORE], "userName": "big@example.com", "title": blob})
    assert response.status_code == 413
    assert user_rows(runtime) == 0


def test_duplicate_user_name_is_409_uniqueness_and_case_insensitive(scim):
    scim.create_user("Dup.User@example.com")
    response = scim.post("/Users", {"schemas": [CORE], "userName": "dup.user@EXAMPLE.com"})
    assert response.status_code == 409 and response.json["scimType"] == "uniqueness"


def test_one_idp_cannot_take_over_another_sources_user(scim, client, runtime):
    user = scim.create_user("owned@example.com")
    okta = Scim(client, create_token(runtime, "okta", "scim"))
    response = okta.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "displayName", "value": "mine"}])
    assert response.status_code == 404  # another source's user is not even visible
    assert "scim:entra" not in response.json["detail"]
    assert okta.delete(f"/Users/{user['id']}").status_code == 404
    assert okta.get(f"/Users/{user['id']}").status_code == 404
    assert scim.get(f"/Users/{user['id']}").json.get("displayName") is None


def test_writes_are_audited_with_the_client_as_source(scim, runtime):
    user = scim.create_user("audited@example.com")
    scim.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "active", "value": False}])
    with runtime.store.read() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.target_id == user["id"])
                                 .order_by(AuditEvent.id)).all()
    assert [(e.action, e.actor, e.source, e.channel) for e in events] == [
        ("user.create", "entra", "scim:entra", "scim"), ("user.deactivate", "entra", "scim:entra", "scim")]
    assert events[0].request_id


def test_groups_with_members_and_nested_groups(scim):
    alice, bob = scim.create_user("alice@example.com"), scim.create_user("bob@example.com")
    inner = scim.post("/Groups", {"displayName": "Inner", "members": [{"value": bob["id"]}]}).json
    outer = scim.post("/Groups", {"displayName": "Outer", "members": [
        {"value": alice["id"]}, {"value": inner["id"], "type": "Group"}]})
    assert outer.status_code == 201
    members = {m["value"]: m["type"] for m in outer.json["members"]}
    assert members == {alice["id"]: "User", inner["id"]: "Group"}
    found = scim.get(f'/Groups?filter=members[value eq "{alice["id"]}"]').json
    assert [g["displayName"] for g in found["Resources"]] == ["Outer"]
    assert scim.get(f"/Users/{alice['id']}").json["groups"][0]["value"] == outer.json["id"]
    cycle = scim.patch(f"/Groups/{inner['id']}", [{"op": "add", "path": "members",
                                                    "value": [{"value": outer.json["id"], "type": "Group"}]}])
    assert cycle.status_code == 409
    unknown = scim.post("/Groups", {"displayName": "Ghosts", "members": [{"value": "no-such-id"}]})
    assert unknown.status_code == 400 and unknown.json["scimType"] == "invalidValue"


def test_bulk_with_bulk_ids_and_fail_on_errors(scim, runtime):
    body = {"schemas": [BULK], "failOnErrors": 1, "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "u1",
         "data": {"schemas": [CORE], "userName": "bulk1@example.com"}},
        {"method": "POST", "path": "/Groups", "bulkId": "g1",
         "data": {"displayName": "Bulkers", "members": [{"value": "bulkId:u1", "type": "User"}]}},
        {"method": "POST", "path": "/Users", "bulkId": "dup",
         "data": {"schemas": [CORE], "userName": "BULK1@example.com"}},
        {"method": "POST", "path": "/Users", "bulkId": "never",
         "data": {"schemas": [CORE], "userName": "bulk2@example.com"}},
    ]}
    response = scim.post("/Bulk", body)
    assert response.status_code == 200
    results = response.json["Operations"]
    assert [r["status"] for r in results] == ["201", "201", "409"]  # stopped after the first error
    assert user_rows(runtime) == 1
    group = scim.get(results[1]["location"].split("/scim/v2")[1]).json
    assert group["members"][0]["value"] == results[0]["location"].rsplit("/", 1)[1]


def test_bulk_limits_come_from_the_service_provider_config(scim):
    operations = [{"method": "POST", "path": "/Users", "bulkId": str(i),
                   "data": {"schemas": [CORE], "userName": f"b{i}@example.com"}} for i in range(1001)]
    response = scim.post("/Bulk", {"schemas": [BULK], "Operations": operations})
    assert response.status_code == 413


def test_users_of_other_sources_are_invisible_unless_the_idp_may_adopt_them(scim, client, runtime, admin_headers):
    """A local user made through the admin API is not the IdP's to see; one that an ownership
    rule lets the IdP take over is, with its e-mail shown and kept in step."""
    from bridge.config import load_config_data
    from bridge.runtime import build_runtime
    from bridge.web import create_app

    local = client.post("/api/v1/users", json={"user_name": "local.person", "email": "local.person@example.org"},
                        headers=admin_headers).json
    assert scim.get('/Users?filter=emails[value eq "LOCAL.person@example.org"]').json["totalResults"] == 0
    assert scim.get(f"/Users/{local['id']}").status_code == 404
    taken = scim.post("/Users", {"schemas": [CORE], "userName": "LOCAL.Person"})
    assert taken.status_code == 409 and "local" not in taken.json["detail"].replace("LOCAL.Person", "")

    adopting = build_runtime(load_config_data({"ownership": {"rules": [
        {"source": "scim:adopter", "may_take_over": ["local"]}]}}), store=runtime.store)
    adopter = Scim(create_app(adopting).test_client(), create_token(adopting, "adopter", "scim"))
    found = adopter.get('/Users?filter=emails[value eq "LOCAL.person@example.org"]').json
    assert [u["id"] for u in found["Resources"]] == [local["id"]]
    assert found["Resources"][0]["emails"] == [{"value": "local.person@example.org", "primary": True}]
    client.patch(f"/api/v1/users/{local['id']}", json={"email": "moved@example.org"}, headers=admin_headers)
    assert adopter.get('/Users?filter=emails co "moved@"').json["totalResults"] == 1
    assert adopter.get('/Users?filter=emails co "local.person@"').json["totalResults"] == 0


def test_attribute_names_are_case_insensitive(scim):
    user = scim.create_user("Case.Test@example.com")
    found = scim.get('/Users?filter=USERNAME eq "case.test@example.com"&attributes=USERNAME&sortBy=UserName')
    assert found.json["totalResults"] == 1 and found.json["Resources"][0]["userName"] == "Case.Test@example.com"
    patched = scim.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "DISPLAYNAME", "value": "Case"},
                                                  {"op": "add", "path": "Name.GivenName", "value": "Cas"}])
    assert patched.status_code in (200, 204)
    after = scim.get(f"/Users/{user['id']}").json
    assert after["displayName"] == "Case" and after["name"]["givenName"] == "Cas"
    assert scim.get(f'/Users?filter={ENTERPRISE.upper()}:department pr').status_code == 200
