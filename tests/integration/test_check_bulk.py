"""Checks in bulk and the two lookups over HTTP (SQLite and PostgreSQL): many (user, right,
scope) items in one request, "in which scopes may U do R" and "who may do R at S", each
exactly what single checks answer. Attacked: too many items, an unknown user among
known ones, an inactive or API user, a right given by an attribute rule (the lookup must
not miss it), a change between two pages, another token kind."""

from __future__ import annotations

import pytest

from bridge.config import Config, load_config_data
from bridge.services import Actor

RAW = {
    "roles": [
        {"name": "basic_user", "rights": ["orders.read"]},
        {"name": "fleet_manager", "rights": ["users.manage"], "includes": ["basic_user"]},
        {"name": "auditor", "rights": ["audit.read"]},
    ],
    "scopes": {"nodes": [{"id": "company_group:north"}, {"id": "pool:north-1", "parent": "company_group:north"},
                         {"id": "pool:north-2", "parent": "company_group:north"}, {"id": "company_group:south"}]},
    "mapping": {"rules": [
        {"source": "scim", "group": "Fleet North", "role": "fleet_manager", "scope": "company_group:north"},
        {"source": "scim", "attribute": "department", "value": "Audit", "role": "auditor", "scope": "instance"},
    ]},
}


@pytest.fixture
def config() -> Config:
    return load_config_data(RAW)


@pytest.fixture
def people(runtime) -> dict[str, str]:
    """alice: fleet manager of north (a group rule); bob: basic_user at pool:north-2 (a grant);
    carol: an auditor by her department (an attribute rule); dave: inactive fleet manager;
    erin: an API user holding basic_user at instance; frank: nothing."""
    ids: dict[str, str] = {}
    with runtime.services.unit(Actor.scim_client("entra")) as uow:
        group = uow.groups.create("Fleet North")
        for name, extra in [("alice.smith", {}), ("bob.jones", {}), ("carol.audit", {"department": "Audit"}),
                            ("dave.gone", {}), ("erin.robot", {}), ("frank.none", {})]:
            user = uow.users.create(user_name=name, email=f"{name}@example.org", attributes=extra)
            ids[name] = user.id
        uow.groups.change_members(group, add_users=[ids["alice.smith"], ids["dave.gone"]])
        uow.users.update(uow.users.get(ids["dave.gone"]), active=False)
    with runtime.services.unit(Actor(name="admin", channel="admin-api")) as uow:
        uow.grants.grant("basic_user", "pool:north-2", user_id=ids["bob.jones"], origin="api")
        uow.grants.grant("basic_user", "instance", user_id=ids["erin.robot"], origin="api")
        uow.users.update(uow.users.get(ids["erin.robot"]), access_type="api")
    return ids


def post(client, headers, path, body):
    return client.post(path, json=body, headers=headers)


def test_many_checks_answer_as_single_checks_do(client, admin_headers, people):
    items = [{"user": user, "right": right, "scope": scope}
             for user in ["alice.smith", "bob.jones", "carol.audit", "dave.gone", "frank.none"]
             for right in ["orders.read", "users.manage", "audit.read"]
             for scope in ["instance", "company_group:north", "pool:north-1", "pool:north-2"]]
    items.append({"user": "erin.robot", "right": "orders.read", "interactive": True})
    bulk = post(client, admin_headers, "/api/v1/check", {"items": items})
    assert bulk.status_code == 200
    results = bulk.json["results"]
    assert len(results) == len(items)
    for item, result in zip(items, results, strict=True):
        single = post(client, admin_headers, "/api/v1/check", item).json
        assert result == single, (item, result, single)
    # alice: two rights at north and its two pools; bob: one at pool:north-2; carol: audit.read
    # everywhere (her department); dave (inactive) and frank nothing; erin (API) not interactively
    assert sum(r["allowed"] for r in results) == 6 + 1 + 4


def test_an_item_that_cannot_be_checked_fails_alone(client, admin_headers, people):
    items = [{"user": "alice.smith", "right": "orders.read", "scope": "pool:north-1"},
             {"user": "nobody.here", "right": "orders.read"},
             {"user": "alice.smith", "right": "orders.read", "scope": "pool:atlantis"},
             {"user": "bob.jones", "right": "orders.read", "scope": "pool:north-2"}]
    results = post(client, admin_headers, "/api/v1/check", {"items": items, "explain": True}).json["results"]
    assert results[0]["allowed"] is True and results[0]["because"]
    assert results[1] == {"error": {"code": "notFound", "message": "no user 'nobody.here' (by id or userName)",
                                    "field": "user"}}
    assert results[2]["error"]["field"] == "scope"
    assert results[3]["allowed"] is True


@pytest.mark.parametrize("body, field", [
    ({"items": [{"user": "a", "right": "r"}] * 1001}, "items"),
    ({"items": []}, "items"),
    ({"items": [{"user": "a", "right": "r"}], "user": "a", "right": "r"}, "items"),
    ({"items": [{"user": "a", "right": "r", "bogus": 1}]}, "bogus"),
    ({"right": "orders.read"}, "user"),
])
def test_a_bulk_body_that_is_wrong_names_the_field(client, admin_headers, people, body, field):
    response = post(client, admin_headers, "/api/v1/check", body)
    assert response.status_code == 422 and field in (response.json["error"]["field"] or ""), response.json


def test_the_scopes_where_a_user_may(client, admin_headers, people):
    alice = post(client, admin_headers, "/api/v1/check/scopes", {"user": "alice.smith", "right": "orders.read"})
    assert alice.json["granted_at"] == ["company_group:north"]
    assert alice.json["scopes"] == ["company_group:north", "pool:north-1", "pool:north-2"]
    bob = post(client, admin_headers, "/api/v1/check/scopes",
               {"user": "bob.jones", "right": "orders.read", "explain": True}).json
    assert bob["scopes"] == ["pool:north-2"] and bob["because"]["pool:north-2"][0]["role"] == "basic_user"
    carol = post(client, admin_headers, "/api/v1/check/scopes", {"user": "carol.audit", "right": "audit.read"}).json
    assert carol["granted_at"] == ["instance"] and len(carol["scopes"]) == 5
    for user in ("dave.gone", "frank.none"):
        none = post(client, admin_headers, "/api/v1/check/scopes", {"user": user, "right": "orders.read"}).json
        assert none["scopes"] == [] and none["granted_at"] == []
    robot = post(client, admin_headers, "/api/v1/check/scopes",
                 {"user": "erin.robot", "right": "orders.read", "interactive": True}).json
    assert robot["scopes"] == []
    for scope in ["instance", "company_group:north", "pool:north-1", "pool:north-2", "company_group:south"]:
        single = post(client, admin_headers, "/api/v1/check",
                      {"user": "alice.smith", "right": "orders.read", "scope": scope}).json["allowed"]
        assert single == (scope in alice.json["scopes"])


def test_who_may_at_a_scope(client, admin_headers, people):
    def who(right, scope, **extra):
        answer = post(client, admin_headers, "/api/v1/check/users", {"right": right, "scope": scope, **extra})
        assert answer.status_code == 200, answer.json
        return [u["user_name"] for u in answer.json["users"]], answer.json["next"]

    assert who("orders.read", "pool:north-2") == (sorted(["alice.smith", "bob.jones", "erin.robot"],
                                                         key=lambda n: people[n]), None)
    assert who("orders.read", "pool:north-2", interactive=True)[0] == sorted(["alice.smith", "bob.jones"],
                                                                             key=lambda n: people[n])
    assert who("orders.read", "pool:north-1")[0] == sorted(["alice.smith", "erin.robot"], key=lambda n: people[n])
    assert who("audit.read", "pool:north-1")[0] == ["carol.audit"]  # by an attribute rule: not missed
    assert who("users.manage", "company_group:south") == ([], None)
    explained = post(client, admin_headers, "/api/v1/check/users",
                     {"right": "orders.read", "scope": "pool:north-1", "explain": True}).json["users"]
    assert {u["user_name"]: u["because"][0]["scope"] for u in explained} == {
        "alice.smith": "company_group:north", "erin.robot": "instance"}
    missing = post(client, admin_headers, "/api/v1/check/users", {"right": "orders.read", "scope": "pool:nope"})
    assert missing.status_code == 404 and missing.json["error"]["field"] == "scope"


def test_who_may_pages_through_and_sees_a_change_between_pages(client, admin_headers, runtime, people):
    first = post(client, admin_headers, "/api/v1/check/users",
                 {"right": "orders.read", "scope": "pool:north-2", "limit": 1}).json
    assert len(first["users"]) == 1 and first["next"] == first["users"][0]["id"]
    seen = [first["users"][0]["user_name"]]
    with runtime.services.unit(Actor(name="admin", channel="admin-api")) as uow:  # frank gains the right
        uow.grants.grant("basic_user", "pool:north-2", user_id=people["frank.none"], origin="api")
    after = first["next"]
    while after:
        page = post(client, admin_headers, "/api/v1/check/users",
                    {"right": "orders.read", "scope": "pool:north-2", "limit": 1, "after": after}).json
        seen += [u["user_name"] for u in page["users"]]
        after = page["next"]
    # keyset pages: each user once, in id order; a change behind the cursor is for the next walk
    everyone = sorted(["alice.smith", "bob.jones", "erin.robot", "frank.none"], key=lambda n: people[n])
    expected = [seen[0]] + [name for name in everyone if people[name] > first["next"]]
    assert seen == expected


def test_the_lookups_want_an_admin_token(client, scim_headers, people):
    for path, body in [("/api/v1/check", {"items": [{"user": "alice.smith", "right": "orders.read"}]}),
                       ("/api/v1/check/scopes", {"user": "alice.smith", "right": "orders.read"}),
                       ("/api/v1/check/users", {"right": "orders.read"})]:
        assert post(client, scim_headers, path, body).status_code == 401
