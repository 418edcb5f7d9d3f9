"""Trust between sources, part two: memberships respect ownership (SQLite and PostgreSQL).

On 314d8f0 idp2 put an LDAP user (or idp1's users and groups) into its own group
"Finance", and a mapping rule with source "scim" or "*" then granted that user a role.
A source's groups now hold only its own users and groups, or those an ownership rule
lets it take over; the customer rules' memberships have origins of their own."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bridge.config import load_config_data
from bridge.ldap.sync import run_sync
from bridge.runtime import build_runtime
from bridge.services import Actor
from bridge.services.errors import SourceConflict
from bridge.store.models import User
from bridge.web import create_app
from tests.fixtures.app import create_token
from tests.fixtures.slapd import source_settings
from tests.integration.test_scim_http import BULK, Scim, scim_for

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
RAW = {
    "roles": [{"name": "finance", "rights": ["invoices.approve"]}],
    "mapping": {"rules": [{"source": "*", "group": "Finance", "role": "finance", "scope": "instance"}]},
}


@pytest.fixture
def config():
    return load_config_data(RAW)


def allowed(client, admin_headers, user: str) -> bool:
    response = client.post("/api/v1/check", headers=admin_headers,
                           json={"user": user, "right": "invoices.approve", "scope": "instance"})
    assert response.status_code == 200, response.json
    return bool(response.json["allowed"])


def members(scim: Scim, group_id: str) -> set[str]:
    return {m["value"] for m in scim.get(f"/Groups/{group_id}").json.get("members", [])}


def test_an_idp_cannot_put_another_sources_users_or_groups_into_its_groups(client, runtime, admin_headers):
    idp1, idp2 = scim_for(client, runtime, "idp1"), scim_for(client, runtime, "idp2")
    victim = idp1.create_user("victim.user")["id"]
    victims_group = idp1.post("/Groups", {"schemas": [GROUP], "displayName": "Staff"}).json["id"]
    own = idp2.create_user("own.user")["id"]

    # Another source's users and groups are invisible: naming one is naming no member at all.
    created = idp2.post("/Groups", {"schemas": [GROUP], "displayName": "Finance",
                                    "members": [{"value": own}, {"value": victim}]})
    assert created.status_code == 400 and "neither a user nor a group" in created.json["detail"]
    finance = idp2.post("/Groups", {"schemas": [GROUP], "displayName": "Finance",
                                    "members": [{"value": own}]}).json["id"]
    for operations in ([{"op": "add", "path": "members", "value": [{"value": victim}]}],
                       [{"op": "add", "path": "members", "value": [{"value": victims_group}]}],
                       [{"op": "replace", "path": "members", "value": [{"value": own}, {"value": victim}]}]):
        response = idp2.patch(f"/Groups/{finance}", operations)
        assert response.status_code == 400, (operations, response.json)
    body = idp2.get(f"/Groups/{finance}").json
    body["members"].append({"value": victim})
    assert idp2.put(f"/Groups/{finance}", body).status_code == 400
    bulk = idp2.post("/Bulk", {"schemas": [BULK], "Operations": [{"method": "PATCH", "path": f"/Groups/{finance}",
                     "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
                         {"op": "add", "path": "members", "value": [{"value": victim}]}]}}]})
    assert bulk.json["Operations"][0]["status"] == "400"

    assert members(idp2, finance) == {own}
    assert allowed(client, admin_headers, "own.user") and not allowed(client, admin_headers, "victim.user")


def test_an_idp_cannot_reach_a_directory_user_through_a_rule_on_its_group_name(client, store, slapd):
    rt = build_runtime(load_config_data({**RAW, "ldap": {"sources": [source_settings(slapd)]}}), store=store)
    assert run_sync(rt, "corp").status == "ok"
    web = create_app(rt).test_client()
    idp2 = Scim(web, create_token(rt, "idp2", "scim"))
    admin = {"Authorization": f"Bearer {create_token(rt, 'portal', 'admin')}"}
    with rt.store.read() as session:  # invisible to idp2: its id taken from the store
        alice = session.scalar(select(User.id).where(User.user_name == "alice"))
    response = idp2.post("/Groups", {"schemas": [GROUP], "displayName": "Finance", "members": [{"value": alice}]})
    assert response.status_code == 400
    assert not allowed(web, admin, "alice")


def test_an_ownership_rule_lets_a_source_reference_what_it_may_take_over(client, runtime):
    rt = build_runtime(load_config_data({**RAW, "ownership": {"rules": [
        {"source": "scim:idp2", "may_take_over": ["scim:idp1"]}]}}), store=runtime.store)
    web = create_app(rt).test_client()
    idp1, idp2 = Scim(web, create_token(rt, "idp1", "scim")), Scim(web, create_token(rt, "idp2", "scim"))
    adopted = idp1.create_user("adopted.user")["id"]
    group = idp2.post("/Groups", {"schemas": [GROUP], "displayName": "Finance", "members": [{"value": adopted}]})
    assert group.status_code == 201, group.json


def test_the_local_operator_and_the_customer_rules_may_hold_anyone(runtime):
    with runtime.services.unit(Actor.scim_client("idp1")) as uow:
        user_id = uow.users.create(user_name="idp1.person").id
    with runtime.services.unit(Actor(name="cli:test", channel="cli")) as uow:
        group = uow.groups.create("Operators")
        uow.groups.change_members(group, add_users=[user_id])
        assert uow.groups.user_member_ids(group) == {user_id}
    with runtime.services.unit(Actor.scim_client("idp2")) as uow:
        theirs = uow.groups.create("Theirs")
        with pytest.raises(SourceConflict):
            uow.groups.change_members(theirs, add_users=[user_id])
