"""What Entra ID, Okta and their published test collections send, replayed request by request
(SQLite and PostgreSQL), one test per client behaviour, each naming the document it comes from.

Sources (read with the search tools; the bodies below are theirs, ids replaced):
- [MS-TUT]  Microsoft Learn, "Tutorial: Develop and plan provisioning for a SCIM endpoint in
            Microsoft Entra ID" (MicrosoftDocs/entra-docs,
            docs/identity/app-provisioning/use-scim-to-provision-users-and-groups.md).
- [MS-KI]   "Known issues and resolutions with SCIM 2.0 protocol compliance" (same repo,
            application-provisioning-config-problem-scim-compatibility.md).
- [MS-LA]   AzureAD/SCIMReferenceCode, Microsoft.SCIM.LogicAppValidationTemplate: the Entra
            app-gallery validation tests (SCIM_Null_Update_Test, SCIM_Update_Manager_Test).
- [MS-PM]   AzureAD/SCIMReferenceCode, PostmanCollection.json ("User tests with garbage",
            "Group tests with garbage", "ComplexAttribute tests", filter tests).
- [OK-REF]  Okta, "Okta and SCIM Version 2.0" (okta/okta-developer-docs, docs/reference/scim/scim-20).
- [SCIMMY]  scimmyjs/scimmy issues #59 and #90: Microsoft's SCIM validator sends a PATCH with an
            empty Operations list and counts a 400 as a failure.
"""

from __future__ import annotations

import logging

import pytest

from bridge.config import Config, load_config_data
from tests.fixtures.app import create_token
from tests.integration.test_scim_http import CORE, ENTERPRISE, PATCH, Scim
from tests.integration.test_scim_idps import entra, okta  # noqa: F401 (the two IdPs' clients)

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ADSCIM_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
MANAGER = f"{ENTERPRISE}:manager"


def patch(scim: Scim, path: str, document: dict, query: str = ""):
    return scim.request("PATCH", f"{path}{query}", document)


def ignored(runtime, client: str, kind: str) -> float:
    value = runtime.metrics.registry.get_sample_value("dirbridge_scim_ignored_total",
                                                      {"client": client, "kind": kind})
    return value or 0.0


# -- manager without $ref --------------------------------------------------------------------


def test_manager_with_value_only_on_post_and_put(entra):
    """[MS-PM] "User tests / Post EnterpriseUser": the manager as {"Value": id} (PascalCase, no
    $ref), expected 201; RFC 7643 §4.3 makes value and $ref RECOMMENDED, not required."""
    boss = entra.create_user("SuzzyQ")
    created = entra.post("/Users", {
        "schemas": [ENTERPRISE, CORE], "userName": "bob@example.com",
        ENTERPRISE: {"Department": "bob", "Manager": {"Value": boss["id"]}}})
    assert created.status_code == 201, created.json
    assert created.json[ENTERPRISE]["manager"]["value"] == boss["id"]

    body = entra.get(f"/Users/{created.json['id']}").json
    body[ENTERPRISE]["manager"] = {"value": boss["id"], "displayName": "Suzzy Q"}  # value + displayName
    replaced = entra.put(f"/Users/{created.json['id']}", body)
    assert replaced.status_code == 200, replaced.json
    assert replaced.json[ENTERPRISE]["manager"]["value"] == boss["id"]


def test_a_get_body_put_back_unchanged_is_accepted(okta):
    """[OK-REF] "Update the User": Okta GETs the user and PUTs the body back, read-only id,
    meta and groups included; expected 200 with the user, and nothing changes."""
    user = okta.post("/Users", {"schemas": [CORE, ENTERPRISE], "userName": "test.user@okta.local",
                                "name": {"givenName": "Test", "familyName": "User"},
                                ENTERPRISE: {"manager": {"value": okta.create_user("chef")["id"]}}}).json
    body = okta.get(f"/Users/{user['id']}").json
    put = okta.put(f"/Users/{user['id']}", body)
    assert put.status_code == 200, put.json
    assert put.json["meta"]["version"] == body["meta"]["version"]  # an unchanged PUT keeps the ETag


def test_manager_set_changed_and_cleared_by_patch_as_the_gallery_test_does(entra):
    """[MS-LA] SCIM_Update_Manager_Test: Add with a bare id, replace with another, replace with ""
    to clear; each 200 or 204, then manager.value is the id, and empty or absent at the end."""
    user, first, second = (entra.create_user(n)["id"] for n in ("employee", "manager1", "manager2"))
    for op, value in (("Add", first), ("replace", second)):
        response = entra.patch(f"/Users/{user}", [{"op": op, "path": MANAGER, "value": value}])
        assert response.status_code == 200, response.json
        assert entra.get(f"/Users/{user}").json[ENTERPRISE]["manager"]["value"] == value
    cleared = entra.patch(f"/Users/{user}", [{"op": "replace", "path": MANAGER, "value": ""}])
    assert cleared.status_code == 200, cleared.json
    assert "manager" not in entra.get(f"/Users/{user}").json.get(ENTERPRISE, {})


# -- schema URIs without attributes ------------------------------------------------------------


def test_a_group_listing_entras_adscim_schema_is_created(entra):
    """[MS-TUT] "Create Group": schemas lists .../ADSCIM/2.0/Group, which defines nothing in the
    body; expected 201, the response listing the core Group schema only."""
    created = entra.post("/Groups", {"schemas": [GROUP, ADSCIM_GROUP], "externalId": "8aa1a0c0-c4c3-4bc0",
                                     "displayName": "displayName", "meta": {"resourceType": "Group"}})
    assert created.status_code == 201, created.json
    assert created.json["schemas"] == [GROUP]


def test_a_user_listing_the_enterprise_schema_without_its_object_is_created(entra):
    """[MS-TUT] "Create User" and [MS-LA]'s null-update body: the enterprise URN in schemas, no
    extension object; Example 2 of [MS-TUT] misspells the URN (``2.0User``)."""
    misspelt = "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"
    for name, urn in (("Test_User_1", ENTERPRISE), ("jyoung@testuser.com", misspelt)):
        created = entra.post("/Users", {"schemas": [CORE, urn], "userName": name, "active": True,
                                        "externalId": name, "roles": []})
        assert created.status_code == 201, created.json


# -- unknown attributes and nulls --------------------------------------------------------------


def test_unknown_attributes_and_nulls_are_ignored_and_counted(entra, runtime):
    """[MS-TUT] Example 2 sends "addresses", "phoneNumbers", "title", "department" and "manager" as
    null (the last two at the top level); [MS-PM] "Put a user misspelled attribute" sends
    "adreses" and expects 200 with the attribute ignored; [OK-REF] sends "groups": [] and a
    password on every create."""
    created = entra.post("/Users", {
        "schemas": [CORE], "externalId": "jyoung", "userName": "jyoung@testuser.com", "active": True,
        "addresses": None, "displayName": "Joy Young", "phoneNumbers": None, "preferredLanguage": None,
        "title": None, "department": None, "manager": None, "groups": [],
        "emails": [{"type": "work", "value": "jyoung@Contoso.com", "primary": True}],
        "name": {"familyName": "Young", "givenName": "Joy", "honorificPrefix": None}})
    assert created.status_code == 201, created.json
    assert created.json["displayName"] == "Joy Young" and "title" not in created.json
    body = entra.get(f"/Users/{created.json['id']}").json
    body["adreses"] = [{"type": "work", "streetAddress": "1 Main St"}]
    replaced = entra.put(f"/Users/{created.json['id']}", body)
    assert replaced.status_code == 200, replaced.json
    assert "adreses" not in replaced.json and "addresses" not in replaced.json
    assert ignored(runtime, "entra", "null_value") >= 7
    assert ignored(runtime, "entra", "unknown_attribute") >= 1


def test_strict_mode_keeps_refusing_what_the_rfc_refuses(client, runtime):
    """scim.strict = true: today's strictness for those who want it."""
    strict = runtime.config.model_copy(update={"scim": runtime.config.scim.model_copy(update={"strict": True})})
    from bridge.runtime import build_runtime
    from bridge.web import create_app

    rt = build_runtime(strict, store=runtime.store)
    scim = Scim(create_app(rt).test_client(), create_token(rt, "strict", "scim"))
    unknown = scim.post("/Users", {"schemas": [CORE], "userName": "x@example.com", "unknownAttribute": 1})
    assert unknown.status_code == 400 and unknown.json["scimType"] == "invalidSyntax"
    adscim = scim.post("/Groups", {"schemas": [GROUP, ADSCIM_GROUP], "displayName": "g"})
    assert adscim.status_code == 400
    user = scim.create_user("strict.user")
    empty = scim.request("PATCH", f"/Users/{user['id']}", {"schemas": [PATCH], "Operations": []})
    assert empty.status_code == 400
    assert scim.get("/Users?filter=userName eq strict.user").status_code == 400


# -- clearing values; e-mails that are no addresses -------------------------------------------


@pytest.mark.parametrize("empty", ["", None])
def test_the_gallery_null_update_clears_optional_attributes(entra, empty):
    """[MS-LA] SCIM_Null_Update_Test: one replace per mapped optional attribute with "" (phase 1)
    or null (phase 2); each 200 or 204, then a GET shows the attribute empty or absent."""
    user = entra.post("/Users", {
        "schemas": [CORE, ENTERPRISE], "userName": "scnull1a2b3c4d@example.com", "active": True,
        "externalId": "scnull1a2b3c4d", "name": {"givenName": "Null", "familyName": "Update"},
        "title": "Boss", "emails": [{"type": "work", "value": "null@example.com"}],
        ENTERPRISE: {"department": "Sales"}}).json
    for target in ("name.givenName", 'emails[type eq "work"].value', f"{ENTERPRISE}:department", "title"):
        response = entra.patch(f"/Users/{user['id']}", [{"op": "replace", "path": target, "value": empty}])
        assert response.status_code == 200, (target, response.json)
    after = entra.get(f"/Users/{user['id']}").json
    assert "givenName" not in after.get("name", {}) and "title" not in after
    assert not [e for e in after.get("emails", []) if e.get("type") == "work" and e.get("value")]
    assert "department" not in after.get(ENTERPRISE, {})
    assert after["name"]["familyName"] == "Update"  # only what was named is cleared


def test_the_gallery_null_update_without_paths(entra):
    """[MS-LA], isVerbosePatchSupported false: one path-less replace whose keys are dotted or
    URN-qualified, "" in phase 1 and null in phase 2 ([MS-KI] shows the same form)."""
    user = entra.post("/Users", {"schemas": [CORE, ENTERPRISE], "userName": "pathless@example.com",
                                 "displayName": "Shown", "name": {"givenName": "G", "familyName": "F"},
                                 ENTERPRISE: {"employeeNumber": "42"}}).json
    response = entra.patch(f"/Users/{user['id']}", [{"op": "replace", "value": {
        "displayName": "", "name.givenName": None, f"{ENTERPRISE}:employeeNumber": "", "name.familyName": "Neu"}}])
    assert response.status_code == 200, response.json
    assert "displayName" not in response.json and response.json["name"] == {"familyName": "Neu"}
    assert ENTERPRISE not in response.json


def test_an_email_that_is_no_address_is_stored_for_an_idp_user(entra, client, admin_headers):
    """[MS-PM] "ComplexAttribute tests / create user1": emails[].value "emailName357" (with
    "Primary" capitalised), expected 201 and found by emails[value eq "emailName357"]. A local
    user still needs a real address (invitations and resets go there)."""
    created = entra.post("/Users", {"schemas": [CORE], "userName": "user1",
                                    "emails": [{"Primary": True, "type": "work", "value": "emailName357"}]})
    assert created.status_code == 201, created.json
    assert created.json["emails"][0]["value"] == "emailName357"
    found = entra.get('/Users?filter=emails[value eq "emailName357"]')
    assert found.json["totalResults"] == 1
    local = client.post("/api/v1/users", headers=admin_headers, json={"user_name": "local.user",
                                                                       "email": "emailName357"})
    assert local.status_code == 400 and local.json["error"]["field"] == "email"


# -- PATCH answers --------------------------------------------------------------------------


def test_patch_answers_200_with_the_resource_and_honours_attributes(okta):
    """[OK-REF] "Update a specific User (PATCH)": {"op":"replace","value":{"active":false}}; "the
    response from the SCIM server needs to be the updated User object" (200)."""
    user = okta.create_user("test.user@okta.local", name={"givenName": "Test", "familyName": "User"})
    response = okta.patch(f"/Users/{user['id']}", [{"op": "replace", "value": {"active": False}}])
    assert response.status_code == 200 and response.json["active"] is False
    assert response.json["id"] == user["id"] and response.headers["ETag"] == response.json["meta"]["version"]
    lean = patch(okta, f"/Users/{user['id']}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "value": {"active": True}}]}, "?attributes=active")
    assert lean.status_code == 200 and set(lean.json) == {"schemas", "id", "active"}
    without = patch(okta, f"/Users/{user['id']}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "displayName", "value": "T"}]}, "?excludedAttributes=name,emails")
    assert without.status_code == 200 and "name" not in without.json and without.json["displayName"] == "T"


def test_an_empty_patch_changes_nothing_and_answers_200(entra):
    """[SCIMMY] Microsoft's SCIM validator PATCHes with an empty Operations list; "request does
    nothing" is what it expects (RFC 7644 §3.5.2 asks for one or more)."""
    user = entra.create_user("empty.patch")
    response = entra.patch(f"/Users/{user['id']}", [])
    assert response.status_code == 200, response.json
    assert response.json["meta"]["version"] == user["meta"]["version"]


# -- PATCH forms ------------------------------------------------------------------------------


def test_a_patch_path_naming_an_extension_attribute_without_its_urn(entra):
    """[MS-TUT] Example 5 ("Update a user"): "path":"manager" with a [{"$ref","value"}] value; the
    name is unambiguous, so it is the enterprise manager."""
    user, boss = entra.create_user("worker")["id"], entra.create_user("boss")["id"]
    response = entra.patch(f"/Users/{user}", [{"op": "Add", "path": "manager",
                                               "value": [{"$ref": f"http://x/scim/Users/{boss}", "value": boss}]}])
    assert response.status_code == 200, response.json
    assert response.json[ENTERPRISE]["manager"]["value"] == boss
    number = entra.patch(f"/Users/{user}", [{"op": "add", "path": "employeeNumber", "value": "701"}])
    assert number.status_code == 200 and number.json[ENTERPRISE]["employeeNumber"] == "701"


def test_patchop_members_the_rfc_does_not_define_and_bare_string_members(entra):
    """[MS-PM] "Patch add user4 to group1": an operation with "name":"addMember" and a member with
    "displayName"; "Group tests with garbage": a top-level "id" and a member given as a bare
    string id; [OK-REF] "Update a specific Group name": "id" inside a path-less replace."""
    users = [entra.create_user(f"member{i}")["id"] for i in range(2)]
    group = entra.post("/Groups", {"schemas": [GROUP], "displayName": "group1"}).json
    named = patch(entra, f"/Groups/{group['id']}", {"schemas": [PATCH], "Operations": [
        {"name": "addMember", "op": "add", "path": "members",
         "value": [{"displayName": "new User", "value": users[0]}]}]})
    assert named.status_code == 200, named.json
    assert named.json["members"] == [{"value": users[0], "$ref": named.json["members"][0]["$ref"],
                                      "type": "User", "display": "new User"}]
    bare = patch(entra, f"/Groups/{group['id']}", {"id": group["id"], "schemas": [PATCH], "Operations": [
        {"op": "add", "path": "members", "value": users[1]}]})
    assert bare.status_code == 200, bare.json
    assert {m["value"] for m in bare.json["members"]} == set(users)
    renamed = entra.patch(f"/Groups/{group['id']}", [{"op": "replace", "value": {"id": group["id"],
                                                                                  "displayName": "Test SCIMv2"}}])
    assert renamed.status_code == 200 and renamed.json["displayName"] == "Test SCIMv2"


# -- filters ----------------------------------------------------------------------------------


def test_unquoted_filter_values_are_strings(entra):
    """[MS-TUT] Example 1: GET /Users?filter=externalId eq jyoung; [MS-PM]: userName sw O and
    name.FamilyName eq Employee ... (emails.Value co example.com ...). true, false, null and
    numbers keep their meaning."""
    entra.create_user("OMalley", externalId="jyoung", name={"familyName": "Employee"},
                      emails=[{"value": "o@example.com", "type": "work"}])
    entra.create_user("Other", active=False)
    assert [u["userName"] for u in entra.get("/Users?filter=externalId eq jyoung").json["Resources"]] == ["OMalley"]
    assert entra.get("/Users?filter=userName sw O").json["totalResults"] == 2
    assert entra.get("/Users?filter=name.FamilyName eq Employee and (emails.Value co example.com or "
                     "emails.Value co example.org)").json["totalResults"] == 1
    assert entra.get("/Users?filter=active eq false").json["Resources"][0]["userName"] == "Other"
    assert entra.get('/Users?filter=userName eq "OMalley"').json["totalResults"] == 1
    bad = entra.get("/Users?filter=userName eq")
    assert bad.status_code == 400 and bad.json["scimType"] == "invalidFilter"


# -- group names --------------------------------------------------------------------------------


def test_a_duplicate_group_display_name_within_one_source_is_409(entra, okta):
    """[MS-TUT] /Groups: "Groups must have uniqueness on the 'displayName' value to match with
    Microsoft Entra ID"; mapping rules name groups by it too. Another IdP's group of the same
    name is another group."""
    assert entra.post("/Groups", {"schemas": [GROUP], "displayName": "Finance"}).status_code == 201
    duplicate = entra.post("/Groups", {"schemas": [GROUP], "displayName": " finance "})
    assert duplicate.status_code == 409 and duplicate.json["scimType"] == "uniqueness"
    other = entra.post("/Groups", {"schemas": [GROUP], "displayName": "Sales"}).json
    renamed = entra.patch(f"/Groups/{other['id']}", [{"op": "replace", "path": "displayName", "value": "FINANCE"}])
    assert renamed.status_code == 409 and renamed.json["scimType"] == "uniqueness"
    assert okta.post("/Groups", {"schemas": [GROUP], "displayName": "Finance"}).status_code == 201


# -- the operator's view of a refused request -----------------------------------------------------


def test_a_4xx_logs_its_reason_on_the_request_line(entra, client, caplog):
    """An operator finds why an IdP's request failed by its request id, which every answer
    carries (a 401 too), and by the reason on the same line."""
    caplog.set_level(logging.INFO, logger="bridge.scim")
    response = entra.post("/Users", {"schemas": [CORE]}, headers={"X-Request-Id": "req-4711"})
    assert response.status_code == 400 and response.headers["X-Request-Id"] == "req-4711"
    lines = [r for r in caplog.records if getattr(r, "request_id", None) == "req-4711"]
    assert len(lines) == 1
    assert lines[0].reason == response.json["detail"] and response.json["detail"] in lines[0].getMessage()
    assert lines[0].scim_type == response.json.get("scimType")

    refused = client.get("/scim/v2/Users", headers={"Authorization": "Bearer wrong"})
    request_id = refused.headers["X-Request-Id"]
    assert refused.status_code == 401 and len(request_id) == 32
    (line,) = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert line.status == 401 and "token" in line.reason


@pytest.fixture
def config() -> Config:
    return load_config_data({})


def test_group_names_are_unique_within_a_source_in_bulk_too(entra):
    """The rule holds on every SCIM path: two creates of one name in one Bulk request."""
    bulk = entra.post("/Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
        {"method": "POST", "path": "/Groups", "bulkId": "a", "data": {"schemas": [GROUP], "displayName": "Audit"}},
        {"method": "POST", "path": "/Groups", "bulkId": "b", "data": {"schemas": [GROUP], "displayName": "AUDIT"}}]})
    assert bulk.status_code == 200, bulk.json
    statuses = [int(op["status"]) for op in bulk.json["Operations"]]
    assert statuses == [201, 409]
    assert entra.get('/Groups?filter=displayName eq "audit"').json["totalResults"] == 1


def test_an_ldap_source_may_hold_two_groups_of_one_cn(store, ldap_tree):
    """A directory may name two groups alike in different subtrees; the sync keeps both (its
    mapping rules can tell them apart by DN), where a SCIM client's second one is refused."""
    from bridge.ldap.sync import run_sync
    from bridge.runtime import build_runtime
    from tests.fixtures.slapd import source_settings

    alice = ldap_tree.add_user("alice")
    ldap_tree.add_group("Admins", [alice])
    ldap_tree.conn.add(f"ou=emea,{ldap_tree.groups_base}", ["organizationalUnit"], {"ou": "emea"})
    ldap_tree.conn.add(f"cn=Admins,ou=emea,{ldap_tree.groups_base}", ["groupOfNames"],
                       {"cn": "Admins", "member": [alice]})
    rt = build_runtime(load_config_data({"ldap": {"sources": [source_settings(ldap_tree.server, ldap_tree)]}}),
                       store=store)
    result = run_sync(rt, "corp")
    assert result.status == "ok" and result.counts.groups_added == 2, result.error


def test_an_add_of_nothing_changes_nothing(entra):
    """An "add" with "" or null (or no value) adds nothing; only a "replace" clears. Without
    this, {"op":"add","path":"members","value":""} would have emptied a group."""
    users = [entra.create_user(f"keep{i}")["id"] for i in range(3)]
    group = entra.post("/Groups", {"schemas": [GROUP], "displayName": "Keep",
                                   "members": [{"value": u} for u in users]}).json
    for operation in ({"op": "add", "path": "members", "value": ""}, {"op": "add", "path": "members", "value": None},
                      {"op": "add", "path": "members"}, {"op": "add", "value": {"members": None}}):
        response = entra.patch(f"/Groups/{group['id']}", [operation])
        assert response.status_code in (200, 400), (operation, response.json)
        assert {m["value"] for m in entra.get(f"/Groups/{group['id']}").json["members"]} == set(users), operation
    cleared = entra.patch(f"/Groups/{group['id']}", [{"op": "replace", "path": "members", "value": None}])
    assert cleared.status_code == 200 and "members" not in cleared.json


def test_emails_that_are_no_address_never_reach_the_mail_column(entra, runtime):
    """A header smuggled in with a newline, two addresses, a dangling @: kept in the SCIM
    attributes as sent, never where invitations, resets and expiry warnings go; a real
    work address beside a bogus primary one is the one mail goes to."""
    from bridge.store.models import User

    for name, value in (("smuggler", "x@y.org\nBcc: z@evil.org"), ("two", "a@b.org, c@evil.org"),
                        ("dangling", "x@")):
        created = entra.post("/Users", {"schemas": [CORE], "userName": name,
                                        "emails": [{"value": value, "primary": True}]})
        assert created.status_code == 201, created.json
        with runtime.store.read() as session:
            assert session.get(User, created.json["id"]).email is None
    both = entra.post("/Users", {"schemas": [CORE], "userName": "both", "emails": [
        {"value": "emailName357", "primary": True}, {"value": "both@example.org", "type": "work"}]}).json
    with runtime.store.read() as session:
        assert session.get(User, both["id"]).email == "both@example.org"


def test_no_header_line_can_be_smuggled_through_the_request_url(client):
    """scim2-server repeats the decoded request URL in Location; a CR LF in it would start a
    header of the client's choosing (response splitting, before any authentication)."""
    response = client.get("/scim/v2/x%0d%0aSet-Cookie:%20session=attacker")
    assert "Set-Cookie" not in response.headers
    assert all("\r" not in v and "\n" not in v for v in response.headers.values())
    assert "%0D%0ASet-Cookie" in response.headers["Location"]


def test_a_refused_requests_reason_stays_on_one_line(runtime, caplog):
    """The reason repeats what the client sent (strict mode names the unknown attribute); a
    line break in it must not start a forged log line (the text log format)."""
    from bridge.runtime import build_runtime
    from bridge.web import create_app

    strict = runtime.config.model_copy(update={"scim": runtime.config.scim.model_copy(update={"strict": True})})
    rt = build_runtime(strict, store=runtime.store)
    scim = Scim(create_app(rt).test_client(), create_token(rt, "strict", "scim"))
    caplog.set_level(logging.INFO, logger="bridge.scim")
    refused = scim.post("/Users", {"schemas": [CORE], "userName": "x@example.com", "a\nforged line": 1},
                        headers={"X-Request-Id": "req-4712"})
    assert refused.status_code == 400 and "forged line" in refused.json["detail"]
    (line,) = [r for r in caplog.records if getattr(r, "request_id", None) == "req-4712"]
    assert "forged line" in line.reason
    assert "\n" not in line.getMessage() and "\n" not in line.reason
