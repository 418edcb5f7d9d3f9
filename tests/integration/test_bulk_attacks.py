"""Attacks on the bulk check, the two lookups and the token cache."""

from __future__ import annotations

import pytest

from bridge.config import Config, load_config_data
from bridge.services import Actor

RAW = {
    "roles": [
        {"name": "basic_user", "rights": ["orders.read"]},
        {"name": "fleet_manager", "rights": ["users.manage"], "includes": ["basic_user"]},
    ],
    "scopes": {"nodes": [{"id": "company_group:north"}, {"id": "pool:north-1", "parent": "company_group:north"}]},
    "mapping": {"rules": [
        {"source": "scim", "group": "Fleet North", "role": "fleet_manager", "scope": "company_group:north"},
    ]},
}


@pytest.fixture
def config() -> Config:
    return load_config_data(RAW)


def post(client, headers, path, body):
    return client.post(path, json=body, headers=headers)



def fullwidth(text: str) -> str:
    """``text`` in fullwidth forms: NFKC (and so the userName key) folds it back."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in text)


def test_a_user_name_whose_key_is_another_users_id_does_not_answer_for_that_id(runtime, client, admin_headers):
    """An id wins over a userName (find_user_id; and a userName that *is* another user's id is
    refused). A SCIM client writes the victim's id in fullwidth digits: the UUID check lets it
    through, its key is the victim's id. Once that user is in the check cache and the victim
    is not (evicted, changed, a fresh replica), a check of the victim's id answers with the
    other user's rights."""
    with runtime.services.unit(Actor(name="admin", channel="admin-api")) as uow:
        victim = uow.users.create(user_name="victor.plain", email="v@example.org").id
    with runtime.services.unit(Actor.scim_client("entra")) as uow:
        group = uow.groups.create("Fleet North")
        twin = uow.users.create(user_name=fullwidth(victim), email="t@example.org").id
        uow.groups.change_members(group, add_users=[twin])
    ask = {"user": victim, "right": "users.manage", "scope": "company_group:north"}
    fresh = post(client, admin_headers, "/api/v1/check", ask).json
    assert fresh == {"allowed": False}  # uncached: the id wins
    runtime.authorizer.cache.clear()  # a fresh replica, or the victim evicted/changed
    assert post(client, admin_headers, "/api/v1/check",
                {"user": twin, "right": "users.manage", "scope": "company_group:north"}).json["allowed"] is True
    single = post(client, admin_headers, "/api/v1/check", {**ask, "explain": True}).json
    assert single["allowed"] is False, single  # now: the twin's rights, named by the victim's id
    bulk = post(client, admin_headers, "/api/v1/check", {"items": [ask]}).json["results"][0]
    assert bulk == {"allowed": False}
    scopes = post(client, admin_headers, "/api/v1/check/scopes", {"user": victim, "right": "users.manage"}).json
    assert scopes["user_id"] == victim and scopes["scopes"] == []
    rights = client.get(f"/api/v1/users/{victim}/rights?scope=company_group:north", headers=admin_headers).json
    assert rights["user_id"] == victim and rights["rights"] == []


def diamond(runtime, depth: int) -> str:
    """A SCIM client's nested groups: ``depth`` layers of two groups, each group a member of
    both groups of the layer above; the top left is "Fleet North" (a group rule gives it
    fleet_manager at company_group:north). The user in a bottom group reaches it by
    2**(depth-2) paths through 2*depth groups."""
    with runtime.services.unit(Actor.scim_client("entra")) as uow:
        layers = [[uow.groups.create("Fleet North"), uow.groups.create("Top Right")]]
        for level in range(1, depth):
            layers.append([uow.groups.create(f"Layer {level} {side}") for side in "ab"])
        for above, below in zip(layers, layers[1:]):
            for parent in above:
                uow.groups.change_members(parent, add_groups=[g.id for g in below])
        user = uow.users.create(user_name="mallory.deep", email="m@example.org")
        uow.groups.change_members(layers[-1][0], add_users=[user.id])
        return user.id


def test_explain_work_is_bounded_for_a_diamond_of_nested_groups(runtime, client, admin_headers):
    """30 groups of one SCIM client: check answers at once, explain enumerates every path
    through the nesting (8,192 chains, 14 MB for one item; each further layer doubles it,
    and items, /check/users and /check/scopes multiply it). A bound on the work and on the
    answer is expected (a capped, deduplicated list of chains, say)."""
    import time

    diamond(runtime, 15)
    ask = {"user": "mallory.deep", "right": "orders.read", "scope": "pool:north-1"}
    assert post(client, admin_headers, "/api/v1/check", ask).json == {"allowed": True}
    started = time.perf_counter()
    answer = post(client, admin_headers, "/api/v1/check", {"items": [ask], "explain": True})
    took = time.perf_counter() - started
    assert answer.status_code == 200
    chains = answer.json["results"][0]["because"]
    assert len(chains) <= 1000 and len(answer.get_data()) < 1_000_000 and took < 1.0, (
        len(chains), len(answer.get_data()), took)
