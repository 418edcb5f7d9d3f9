"""The mapping engine on the store (SQLite and PostgreSQL): grants, rules, nested groups,
explain, and a cache that every change reaches, on this replica and on another."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bridge.config import Config, load_config_data
from bridge.mapping.apply import apply_config
from bridge.mapping.engine import Authorizer
from bridge.mapping.naive import naive_check
from bridge.mapping.rules import compiled_rules
from bridge.services import Actor, Services
from bridge.services.errors import Conflict, InvalidValue, NotFound
from bridge.services.roles import ConfigOwned, RoleCycle
from bridge.store.models import AuditEvent, AuthzState, Group

RAW = {
    "roles": [
        {"name": "basic_user", "rights": ["orders.read"]},
        {"name": "fleet_manager", "rights": ["users.manage", "resources.create"], "includes": ["basic_user"]},
    ],
    "scopes": {"nodes": [
        {"id": "company_group:north"},
        {"id": "pool:north-1", "parent": "company_group:north"},
        {"id": "pool:north-2", "parent": "company_group:north"},
        {"id": "company_group:south"},
        {"id": "pool:south-1", "parent": "company_group:south"},
    ]},
    "mapping": {"rules": [
        {"source": "scim", "group": "Fleet North", "role": "fleet_manager", "scope": "company_group:north"},
        {"source": "ldap:corp", "group_regex": "^cn=pool-(?P<pool>[^,]+)-managers,", "role": "fleet_manager",
         "scope": "pool:{pool}"},
        {"source": "*", "attribute": "title", "value": "Auditor", "role": "basic_user", "scope": "instance"},
    ]},
}
NODES = ["instance", "company_group:north", "pool:north-1", "pool:north-2", "company_group:south", "pool:south-1"]
RIGHTS = ["orders.read", "users.manage", "resources.create"]
ENTRA = Actor.scim_client("entra")
CORP = Actor.ldap_sync("corp")
OPERATOR = Actor(name="cli:test", channel="cli")


@pytest.fixture
def config() -> Config:
    return load_config_data(RAW)


@pytest.fixture
def world(services: Services, config: Config) -> Services:
    apply_config(services, config)
    return services


def user(services: Services, name: str, actor: Actor = OPERATOR, **fields) -> str:
    with services.unit(actor) as uow:
        return uow.users.create(user_name=name, email=f"{name}@example.org", **fields).id


def group(services: Services, name: str, actor: Actor = OPERATOR, members=(), **fields) -> str:
    with services.unit(actor) as uow:
        created = uow.groups.create(name, **fields)
        uow.groups.change_members(created, add_users=list(members))
        return created.id


def grant(services: Services, role: str, scope: str, **holder) -> int:
    with services.unit(OPERATOR) as uow:
        return uow.grants.grant(role, scope, **holder)[0].id


def rights_everywhere(authz: Authorizer, who: str) -> dict[tuple[str, str], bool]:
    return {(r, n): authz.check(who, r, n).allowed for r in RIGHTS for n in NODES}


def naive_everywhere(services: Services, config: Config, who: str) -> dict[tuple[str, str], bool]:
    rules = compiled_rules(config.mapping)
    with services.store.read() as session:
        return {(r, n): naive_check(session, rules, who, r, n) for r in RIGHTS for n in NODES}


# -- what check answers ---------------------------------------------------------------------


def test_a_group_rule_grants_the_role_below_its_node_and_explain_shows_the_chain(world, config):
    alice = user(world, "alice.north", ENTRA)
    group(world, "Fleet North", ENTRA, members=[alice])
    authz = Authorizer(world.store, config)
    decision = authz.check("alice.north", "orders.read", "pool:north-1", explain=True)
    assert decision.allowed
    (chain,) = decision.because
    assert [link.type for link in chain.via] == ["user", "group", "rule"]
    assert chain.via[1].name == "Fleet North" and chain.via[1].origins == ("source",)
    assert chain.via[2].id == "1"
    assert (chain.role, chain.includes, chain.scope) == ("fleet_manager", ("basic_user",), "company_group:north")
    assert not authz.check(alice, "orders.read", "instance").allowed
    assert not authz.check(alice, "orders.read", "pool:south-1").allowed


def test_an_ldap_pattern_rule_fills_the_pool_and_ignores_other_sources(world, config):
    bob = user(world, "bob.pool", CORP)
    group(world, "pool-north-2-managers", CORP, members=[bob],
          ldap_dn="cn=pool-north-2-managers,ou=groups,dc=example,dc=org")
    carol = user(world, "carol.scim", ENTRA)
    group(world, "copy", ENTRA, members=[carol], ldap_dn="cn=pool-north-2-managers,ou=groups,dc=example,dc=org")
    authz = Authorizer(world.store, config)
    assert authz.check("bob.pool", "users.manage", "pool:north-2").allowed
    assert not authz.check("bob.pool", "users.manage", "pool:north-1").allowed
    assert not authz.check("carol.scim", "users.manage", "pool:north-2").allowed


def test_lower_levels_extend_rights_and_never_restrict_them(world, config):
    """The portal's examples: A manages users at the top, so everywhere, even where a lower
    grant is only basic; B is basic at the top and fleet manager in one company group."""
    a = user(world, "user.a")
    grant(world, "fleet_manager", "instance", user_id=a)
    grant(world, "basic_user", "company_group:north", user_id=a)
    b = user(world, "user.b")
    grant(world, "basic_user", "instance", user_id=b)
    grant(world, "fleet_manager", "company_group:north", user_id=b)
    authz = Authorizer(world.store, config)
    assert all(authz.check(a, "users.manage", n).allowed for n in NODES)
    assert [n for n in NODES if authz.check(b, "users.manage", n).allowed] == [
        "company_group:north", "pool:north-1", "pool:north-2"]
    assert all(authz.check(b, "orders.read", n).allowed for n in NODES)
    assert sorted(authz.rights(b, "pool:north-1")[1]) == ["orders.read", "resources.create", "users.manage"]
    assert sorted(authz.rights(b, "pool:south-1")[1]) == ["orders.read"]


def test_nested_groups_individual_rights_and_attribute_rules_add_up(world, config):
    dave = user(world, "dave.nested", ENTRA, attributes={"title": "auditor"})
    inner = group(world, "Inner", ENTRA, members=[dave])
    outer = group(world, "Outer", ENTRA)
    with world.unit(ENTRA) as uow:
        uow.groups.change_members(uow.groups.get(outer), add_groups=[inner])
    grant(world, "fleet_manager", "pool:south-1", group_id=outer)
    with world.unit(OPERATOR) as uow:
        uow.grants.give_right(dave, "resources.create", "company_group:north")
    authz = Authorizer(world.store, config)
    assert authz.check(dave, "users.manage", "pool:south-1").allowed
    assert authz.check(dave, "resources.create", "pool:north-2").allowed
    chains = authz.check(dave, "orders.read", "pool:south-1", explain=True).because
    described = sorted(tuple(link.type for link in c.via) for c in chains)
    assert described == [("user", "group", "group", "grant"), ("user", "rule")]
    nested = next(c for c in chains if len(c.via) == 4)
    assert [link.name for link in nested.via[1:3]] == ["Inner", "Outer"] and nested.via[2].origins == ("nested",)
    assert rights_everywhere(authz, dave) == naive_everywhere(world, config, dave)


def test_admins_may_everything_inactive_users_nothing_and_api_users_not_interactively(world, config):
    admin = user(world, "root.admin", access_type="admin")
    api = user(world, "robot.api", access_type="api")
    grant(world, "basic_user", "instance", user_id=api)
    authz = Authorizer(world.store, config)
    decision = authz.check(admin, "anything.at.all", "pool:north-1", explain=True)
    assert decision.allowed and [link.type for link in decision.because[0].via] == ["user", "access_type"]
    assert authz.check(api, "orders.read", "pool:north-1").allowed
    assert not authz.check(api, "orders.read", "pool:north-1", interactive=True).allowed
    with world.unit(OPERATOR) as uow:
        uow.users.deactivate(uow.users.get(api))
    assert not authz.check(api, "orders.read", "pool:north-1").allowed
    assert authz.rights(api, "instance")[1] == frozenset()


def test_unknown_users_and_scopes_are_not_found(world, config):
    user(world, "eve.known")
    authz = Authorizer(world.store, config)
    with pytest.raises(NotFound, match="no user 'nobody'"):
        authz.check("nobody", "orders.read", "instance")
    with pytest.raises(NotFound, match="no scope node 'pool:atlantis'"):
        authz.check("eve.known", "orders.read", "pool:atlantis")
    assert authz.check("EVE.KNOWN", "orders.read", "instance").allowed is False  # userNames are case-insensitive


# -- the cache sees every change, here and on another replica -------------------------------


def test_every_change_is_seen_by_the_next_check_on_every_replica(world, config):
    here, there = Authorizer(world.store, config), Authorizer(world.store, config)
    user(world, "root.admin", access_type="admin")  # so that frank is not the last admin
    frank = user(world, "frank.changes", ENTRA)
    g = group(world, "Staff", ENTRA)

    def agree() -> None:
        expected = naive_everywhere(world, config, frank)
        assert rights_everywhere(here, frank) == expected
        assert rights_everywhere(there, frank) == expected

    def change(fn, actor=OPERATOR) -> None:
        with world.unit(actor) as uow:
            fn(uow)
        agree()

    agree()
    change(lambda uow: uow.groups.change_members(uow.groups.get(g), add_users=[frank]), ENTRA)
    change(lambda uow: uow.grants.grant("basic_user", "company_group:south", group_id=g))
    assert here.check(frank, "orders.read", "pool:south-1").allowed
    change(lambda uow: uow.roles.update(uow.roles.get("basic_user"), rights=["orders.read", "users.manage"],
                                        from_config=True))
    assert there.check(frank, "users.manage", "pool:south-1").allowed
    change(lambda uow: uow.scopes.update(uow.scopes.get("pool:north-1"), parent="company_group:south",
                                         from_config=True))
    assert here.check(frank, "orders.read", "pool:north-1").allowed
    change(lambda uow: uow.groups.update(uow.groups.get(g), display_name="Fleet North"), ENTRA)
    assert there.check(frank, "resources.create", "pool:north-2").allowed
    outer = group(world, "Outer", ENTRA)
    change(lambda uow: uow.grants.grant("fleet_manager", "instance", group_id=outer))
    change(lambda uow: uow.groups.change_members(uow.groups.get(outer), add_groups=[g]), ENTRA)
    assert here.check(frank, "users.manage", "instance").allowed
    change(lambda uow: uow.groups.change_members(uow.groups.get(outer), remove_groups=[g]), ENTRA)
    change(lambda uow: uow.users.update(uow.users.get(frank), attributes={"title": "Auditor"}), ENTRA)
    assert there.check(frank, "orders.read", "instance").allowed
    change(lambda uow: uow.grants.give_right(frank, "resources.create", "instance"))
    change(lambda uow: uow.users.update(uow.users.get(frank), access_type="admin"))
    change(lambda uow: uow.users.update(uow.users.get(frank), access_type="backend"))
    change(lambda uow: uow.groups.delete(uow.groups.get(g)), ENTRA)
    change(lambda uow: uow.roles.delete(uow.roles.get("basic_user"), from_config=True))
    change(lambda uow: uow.users.deactivate(uow.users.get(frank)), ENTRA)
    assert not any(rights_everywhere(there, frank).values())


def test_invalidation_is_precise(world, config):
    north = user(world, "gina.north", ENTRA)
    south = user(world, "hugo.south", ENTRA)
    group(world, "Fleet North", ENTRA, members=[north])
    southern = group(world, "South", ENTRA, members=[south])
    authz = Authorizer(world.store, config)
    authz.check(north, "orders.read", "instance")
    authz.check(south, "orders.read", "instance")
    cached_north = authz.cache.entry(north)[1]
    with world.unit(ENTRA) as uow:
        uow.groups.change_members(uow.groups.get(southern), remove_users=[south])
    authz.cache.sync()
    assert authz.cache.entry(north)[1] is cached_north  # untouched by the other group's change
    assert authz.cache.entry(south)[1].compiled.groups == frozenset()


def test_writes_that_cannot_change_an_answer_leave_the_generation_alone(world, config):
    ivan = user(world, "ivan.quiet", ENTRA)
    before = generation(world)
    with world.unit(ENTRA) as uow:
        uow.users.update(uow.users.get(ivan), display_name="Ivan Q.", preferred_language="de")
    assert generation(world) == before
    with world.unit(ENTRA) as uow:
        uow.users.update(uow.users.get(ivan), active=False)
    assert generation(world) == before + 1


def generation(services: Services) -> int:
    with services.store.read() as session:
        return session.scalar(select(AuthzState.generation))


# -- roles and scopes -------------------------------------------------------------------------


def test_role_includes_refuse_cycles_with_the_cycle_named(world):
    with world.unit(OPERATOR) as uow:
        uow.roles.create("a_role", rights=["x.read"])
        uow.roles.create("b_role", includes=["a_role"])
        uow.roles.create("c_role", includes=["b_role"])
    with pytest.raises(RoleCycle, match=r"cycle \(a_role -> c_role -> b_role -> a_role\)"), world.unit(OPERATOR) as uow:
        uow.roles.update(uow.roles.get("a_role"), includes=["c_role"])
    with pytest.raises(RoleCycle, match="cannot include itself"), world.unit(OPERATOR) as uow:
        uow.roles.update(uow.roles.get("a_role"), includes=["a_role"])


def test_a_copied_role_has_the_same_rights_and_is_its_own(world):
    with world.unit(OPERATOR) as uow:
        copy = uow.roles.copy(uow.roles.get("fleet_manager"), "fleet_manager_plus")
        assert (copy.origin, uow.roles.rights_of(copy), uow.roles.includes_of(copy)) == (
            "api", ["resources.create", "users.manage"], ["basic_user"])
        uow.roles.update(copy, rights=["users.manage", "reports.read"])
        assert uow.roles.rights_of(uow.roles.get("fleet_manager")) == ["resources.create", "users.manage"]


def test_config_roles_and_nodes_belong_to_the_config(world, config):
    with pytest.raises(ConfigOwned, match="declared in the config"), world.unit(OPERATOR) as uow:
        uow.roles.update(uow.roles.get("basic_user"), rights=[])
    with pytest.raises(ConfigOwned), world.unit(OPERATOR) as uow:
        uow.scopes.delete(uow.scopes.get("pool:north-1"))
    with world.unit(OPERATOR) as uow:
        uow.roles.create("auditor", rights=["audit.read"])
    changed = load_config_data({**RAW, "roles": RAW["roles"] + [{"name": "auditor", "rights": ["audit.write"]}]})
    apply_config(world, changed)
    with world.unit(OPERATOR) as uow:
        auditor = uow.roles.get("auditor")
        assert (auditor.origin, uow.roles.rights_of(auditor)) == ("config", ["audit.write"])


def test_applying_the_same_config_again_changes_nothing(world, config):
    before = generation(world)
    with world.store.read() as session:
        events = session.scalar(select(func.count()).select_from(AuditEvent))
    apply_config(world, config)
    with world.store.read() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == events
        assert {g.display_name for g in session.scalars(select(Group))} >= {"RemoteUsers", "RemoteAdministrators"}
    assert generation(world) == before


def test_the_scope_tree_keeps_its_levels_and_refuses_cycles(world):
    with pytest.raises(InvalidValue, match="a company_group node cannot hang under 'pool:north-1'"), \
            world.unit(OPERATOR) as uow:
        uow.scopes.create("company_group:west", parent="pool:north-1")
    with pytest.raises(InvalidValue, match="level 'region' is not one of"), world.unit(OPERATOR) as uow:
        uow.scopes.create("region:x")
    with world.unit(OPERATOR) as uow:
        uow.scopes.create("company_group:west")
        uow.scopes.create("pool:west-1", parent="company_group:west")
    with pytest.raises(Conflict, match="has children"), world.unit(OPERATOR) as uow:
        uow.scopes.delete(uow.scopes.get("company_group:west"))
    with pytest.raises(Conflict, match="exists already"), world.unit(OPERATOR) as uow:
        uow.scopes.create("pool:west-1")
    with world.unit(OPERATOR) as uow:
        uow.scopes.update(uow.scopes.get("pool:west-1"), parent="company_group:north")
        assert uow.scopes.ancestors("pool:west-1") == ["company_group:north", "instance"]


def test_deleting_a_node_takes_its_grants(world, config):
    jo = user(world, "jo.leaf")
    with world.unit(OPERATOR) as uow:
        uow.scopes.create("pool:leaf", parent="company_group:south")
    grant(world, "basic_user", "pool:leaf", user_id=jo)
    authz = Authorizer(world.store, config)
    assert authz.check(jo, "orders.read", "pool:leaf").allowed
    with world.unit(OPERATOR) as uow:
        uow.scopes.delete(uow.scopes.get("pool:leaf"))
        assert uow.grants.find(user_id=jo) == []
    with pytest.raises(NotFound):
        authz.check(jo, "orders.read", "pool:leaf")


def test_a_replica_that_missed_pruned_changes_starts_afresh(world, config, monkeypatch):
    import bridge.services.changes as changes

    monkeypatch.setattr(changes, "PRUNE_EVERY", 2)
    monkeypatch.setattr(changes, "KEEP_GENERATIONS", 2)
    kim = user(world, "kim.lagging", ENTRA)
    idle = Authorizer(world.store, config)
    assert not idle.check(kim, "orders.read", "instance").allowed
    for scope in ("pool:north-1", "pool:north-2", "pool:south-1", "company_group:south", "instance"):
        grant(world, "basic_user", scope, user_id=kim)
    with world.store.read() as session:
        assert session.scalar(select(AuthzState.pruned_below)) > idle.cache._applied + 1
    resets = idle.cache.stats.resets
    assert idle.check(kim, "orders.read", "instance").allowed
    assert idle.cache.stats.resets == resets + 1
