"""The laws again, on the store and through the cache: random worlds written through the
services, random changes after them; the cached engine must agree with the naive
recursive evaluation after every change (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from bridge.config import Config, load_config_data
from bridge.mapping.apply import apply_config
from bridge.mapping.engine import Authorizer
from bridge.mapping.naive import naive_check
from bridge.mapping.rules import compiled_rules
from bridge.services import Actor, Services
from bridge.store.models import Group, Right, Role, User

NODES = ["instance", "company_group:a", "pool:a1", "pool:a2", "company_group:b", "pool:b1"]
BELOW = {"instance": NODES, "company_group:a": ["company_group:a", "pool:a1", "pool:a2"], "pool:a1": ["pool:a1"],
         "pool:a2": ["pool:a2"], "company_group:b": ["company_group:b", "pool:b1"], "pool:b1": ["pool:b1"]}
RIGHTS = ["r.one", "r.two", "r.three"]
ROLES = ["role0", "role1", "role2"]
GROUPS = ["group0", "group1", "group2"]
OPERATOR = Actor(name="cli:test", channel="cli")
ENTRA = Actor.scim_client("entra")


@pytest.fixture
def config() -> Config:
    return load_config_data({"scopes": {"nodes": [
        {"id": "company_group:a"}, {"id": "pool:a1", "parent": "company_group:a"},
        {"id": "pool:a2", "parent": "company_group:a"}, {"id": "company_group:b"},
        {"id": "pool:b1", "parent": "company_group:b"}]}})


node = st.sampled_from(NODES)
change = st.one_of(
    st.tuples(st.just("user_grant"), st.sampled_from(ROLES), node),
    st.tuples(st.just("group_grant"), st.sampled_from(ROLES), node, st.sampled_from(GROUPS)),
    st.tuples(st.just("membership"), st.sampled_from(GROUPS)),
    st.tuples(st.just("nesting"), st.integers(0, 1)),
    st.tuples(st.just("right"), st.sampled_from(RIGHTS), node),
    st.tuples(st.just("role_right"), st.sampled_from(ROLES), st.sampled_from(RIGHTS)),
)
world = st.fixed_dictionaries({
    "role_rights": st.lists(st.sets(st.sampled_from(RIGHTS), max_size=2), min_size=3, max_size=3),
    "includes": st.tuples(st.booleans(), st.booleans()),  # role0 includes role1, role1 includes role2
    "changes": st.lists(change, min_size=1, max_size=5),
})


def build(services: Services, spec: dict) -> str:
    with services.store.write() as session:
        for model in (User, Group, Role, Right):
            session.execute(delete(model))
    with services.unit(OPERATOR) as uow:
        for name, rights in zip(ROLES, spec["role_rights"], strict=True):
            uow.roles.create(name, rights=sorted(rights))
        if spec["includes"][0]:
            uow.roles.update(uow.roles.get("role0"), includes=["role1"])
        if spec["includes"][1]:
            uow.roles.update(uow.roles.get("role1"), includes=["role2"])
        for right in RIGHTS:
            uow.roles.ensure_right(right)
    with services.unit(ENTRA) as uow:
        for name in GROUPS:
            uow.groups.create(name)
        return uow.users.create(user_name="prop.user").id


def apply(services: Services, user_id: str, step: tuple, *, add: bool) -> None:
    kind = step[0]
    actor = ENTRA if kind in ("membership", "nesting") else OPERATOR
    with services.unit(actor) as uow:
        groups = {g.display_name: g for g in uow.session.query(Group)}
        if kind == "user_grant" or kind == "group_grant":
            holder = {"user_id": user_id} if kind == "user_grant" else {"group_id": groups[step[3]].id}
            if add:
                uow.grants.grant(step[1], step[2], **holder)
            else:
                for grant, _role in uow.grants.find(role=step[1], scope=step[2], **holder):
                    uow.grants.revoke(grant)
        elif kind == "membership":
            members = {"add_users" if add else "remove_users": [user_id]}
            uow.groups.change_members(groups[step[1]], **members)
        elif kind == "nesting":  # group0 in group1, or group1 in group2: never a cycle
            child, parent = ((groups["group0"], groups["group1"]) if step[1] == 0
                             else (groups["group1"], groups["group2"]))
            uow.groups.change_members(parent, **{"add_groups" if add else "remove_groups": [child.id]})
        elif kind == "right":
            if add:
                uow.grants.give_right(user_id, step[1], step[2])
            elif any(r.right_name == step[1] and r.scope_id == step[2] for r in uow.grants.user_rights(user_id)):
                uow.grants.take_right(user_id, step[1], step[2])
        else:
            role = uow.roles.get(step[1])
            rights = set(uow.roles.rights_of(role))
            uow.roles.update(role, rights=sorted(rights | {step[2]} if add else rights - {step[2]}))


def answers(authz: Authorizer, user_id: str) -> dict[tuple[str, str], bool]:
    return {(r, n): authz.check(user_id, r, n).allowed for r in RIGHTS for n in NODES}


def naive(services: Services, config: Config, user_id: str) -> dict[tuple[str, str], bool]:
    rules = compiled_rules(config.mapping)
    with services.store.read() as session:
        return {(r, n): naive_check(session, rules, user_id, r, n) for r in RIGHTS for n in NODES}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=world)
def test_the_cached_engine_agrees_with_the_naive_one_after_every_change(services, config, spec):
    apply_config(services, config)
    user_id = build(services, spec)
    authz = Authorizer(services.store, config)
    assert answers(authz, user_id) == naive(services, config, user_id)
    for step in spec["changes"]:  # adding never removes a right
        before = answers(authz, user_id)
        apply(services, user_id, step, add=True)
        after = answers(authz, user_id)
        assert after == naive(services, config, user_id)
        assert all(after[key] for key, yes in before.items() if yes)
    for step in reversed(spec["changes"]):  # and taking it all away again is seen at once
        apply(services, user_id, step, add=False)
        assert answers(authz, user_id) == naive(services, config, user_id)
    final = answers(authz, user_id)
    for (right, at), yes in final.items():  # a right at a node holds below it
        if yes:
            assert all(final[(right, n)] for n in BELOW[at])
