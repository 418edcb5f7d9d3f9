"""Cross-source attacks on SQLite and PostgreSQL: a second IdP (idp2) goes after what the
first one (idp1) owns, every way a SCIM client can, and every attempt must be refused
without changing or revealing anything. The figures (attempts, refused) go to the report."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bridge.store.models import AccessType, User
from tests.integration.test_scim_http import BULK, CORE, PORTAL, scim_for
from tests.reliability.conftest import Report

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def test_a_second_idp_can_neither_read_change_elevate_nor_reference_the_firsts(client, runtime, report: Report):
    idp1, idp2 = scim_for(client, runtime, "idp1"), scim_for(client, runtime, "idp2")
    victim = idp1.post("/Users", {"schemas": [CORE], "userName": "victim.user", "displayName": "Victim",
                                  "emails": [{"value": "victim@example.org", "primary": True}]}).json
    staff = idp1.post("/Groups", {"schemas": [GROUP], "displayName": "Staff",
                                  "members": [{"value": victim["id"]}]}).json
    own = idp2.create_user("own.user")
    finance = idp2.post("/Groups", {"schemas": [GROUP], "displayName": "Finance"}).json
    user_path, group_path = f"/Users/{victim['id']}", f"/Groups/{staff['id']}"

    def replace(value: dict[str, Any]) -> dict[str, Any]:
        return {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": value}]}

    attacks: list[tuple[str, str, str, Any, set[int]]] = [
        ("read the user", "GET", user_path, None, {404}),
        ("read the group", "GET", group_path, None, {404}),
        ("rename the user", "PATCH", user_path, replace({"displayName": "mine"}), {404}),
        ("set its password", "PATCH", user_path, {"schemas": [PATCH_OP], "Operations": [
            {"op": "add", "path": "password", "value": "Taken-Over-Pass-1"}]}, {404}),
        ("deactivate it", "PATCH", user_path, replace({"active": False}), {404}),
        ("make it admin", "PATCH", user_path, replace({f"{PORTAL}:accessType": "admin"}), {404}),
        ("replace it", "PUT", user_path, {"schemas": [CORE], "userName": "victim.user", "password": "X-Pass-123"},
         {404}),
        ("delete it", "DELETE", user_path, None, {404}),
        ("empty its group", "PATCH", group_path, {"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "members", "value": []}]}, {404}),
        ("delete its group", "DELETE", group_path, None, {404}),
        ("put the user in its group", "PATCH", f"/Groups/{finance['id']}", {"schemas": [PATCH_OP], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": victim["id"]}]}]}, {400}),
        ("nest the group in its group", "PATCH", f"/Groups/{finance['id']}", {"schemas": [PATCH_OP], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": staff["id"]}]}]}, {400}),
        ("make its own user admin", "PATCH", f"/Users/{own['id']}", replace({f"{PORTAL}:accessType": "admin"}),
         {403}),
        ("create an admin", "POST", "/Users", {"schemas": [CORE, PORTAL], "userName": "sneaky.admin",
                                                PORTAL: {"accessType": "admin"}}, {403}),
        ("squat the userName", "POST", "/Users", {"schemas": [CORE], "userName": " VICTIM.user "}, {409}),
        ("the same through Bulk", "POST", "/Bulk", {"schemas": [BULK], "Operations": [
            {"method": "PATCH", "path": user_path, "data": replace({"displayName": "bulk"})}]}, {200}),
    ]
    refused = 0
    for name, method, path, body, expected in attacks:
        response = idp2.request(method, path, body)
        assert response.status_code in expected, (name, response.status_code, response.json)
        if name == "the same through Bulk":
            assert response.json["Operations"][0]["status"] == "404", response.json
        if response.status_code >= 400 or name == "the same through Bulk":
            refused += 1
        if response.status_code == 409:
            assert "idp1" not in response.json["detail"]  # whose the name is stays unsaid
    searches = ['/Users?filter=userName eq "victim.user"', '/Users?filter=emails co "victim@"',
                '/Groups?filter=displayName eq "Staff"', f'/Users?filter=groups.value eq "{staff["id"]}"',
                f'/Groups?filter=members.value eq "{victim["id"]}"', "/Users", "/Groups"]
    for query in searches:
        found = idp2.get(query).json
        seen = {r["id"] for r in found["Resources"]}
        assert not seen & {victim["id"], staff["id"]}, (query, found)
        refused += 1
    root = idp2.post("/.search", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}).json
    assert not {r["id"] for r in root["Resources"]} & {victim["id"], staff["id"]}
    refused += 1

    with runtime.store.read() as session:
        stored = session.get(User, victim["id"])
        assert (stored.display_name, stored.active, stored.password_hash) == ("Victim", True, None)
        admins = session.scalars(select(User.user_name).where(User.access_type == AccessType.admin)).all()
        assert admins == []
    assert {m["value"] for m in idp1.get(group_path).json["members"]} == {victim["id"]}
    tried = len(attacks) + len(searches) + 1
    assert refused == tried
    report.add("inputs", target=f"cross-source attacks by a second IdP ({runtime.store.engine.dialect.name})",
               tried=tried, refused=refused, failures=tried - refused)
