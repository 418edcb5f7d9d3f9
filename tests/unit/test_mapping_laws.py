"""The laws of effective rights, as properties of the evaluator on random worlds.

A world is a random scope tree, roles that include roles, nested groups, a user's
memberships, grants and individual rights. The oracle below enumerates chains
straight from the definition; the engine must agree with it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.mapping.evaluate import allowed, compile_user, effective_rights
from bridge.mapping.explain import explain
from bridge.mapping.model import GroupInfo, Holding, Model, UserInfo

RIGHTS = ["r.a", "r.b", "r.c", "r.d"]


@dataclass
class World:
    parents: list[int | None]  # node i's parent index
    role_rights: list[frozenset[str]]
    role_includes: list[tuple[int, ...]]  # role i includes roles with a larger index (no cycles)
    group_parents: list[tuple[int, ...]]  # group i is in groups with a larger index (no cycles)
    memberships: tuple[int, ...]
    user_holdings: tuple[tuple[int, int], ...]  # (role, node)
    group_holdings: list[tuple[tuple[int, int], ...]]
    individual: tuple[tuple[str, int], ...]
    access_type: str = "backend"
    active: bool = True
    grant_ids: dict[tuple[str, int, int, int], int] = field(default_factory=dict)

    def node(self, i: int) -> str:
        return "instance" if i == 0 else f"pool:n{i}"

    def model(self) -> Model:
        return Model(
            parents={self.node(i): (None if p is None else self.node(p)) for i, p in enumerate(self.parents)},
            role_names={f"R{i}": f"role{i}" for i in range(len(self.role_rights))},
            role_rights={f"R{i}": r for i, r in enumerate(self.role_rights)},
            role_includes={f"R{i}": tuple(f"R{j}" for j in inc) for i, inc in enumerate(self.role_includes)},
            rights=frozenset(RIGHTS),
        )

    def _holding(self, holder: str, index: int, role: int, node: int) -> Holding:
        return Holding(f"R{role}", self.node(node), grant_id=hash((holder, index, role, node)) % 10**9)

    def user(self) -> UserInfo:
        return UserInfo(
            id="u", user_name="alice", active=self.active, access_type=self.access_type,
            memberships=tuple((f"G{g}", ("source",)) for g in sorted(set(self.memberships))),
            holdings=tuple(self._holding("u", i, r, n) for i, (r, n) in enumerate(self.user_holdings)),
            individual=tuple((right, self.node(n)) for right, n in self.individual),
        )

    def groups(self) -> dict[str, GroupInfo]:
        return {f"G{g}": GroupInfo(f"G{g}", f"group{g}", "scim:test", tuple(f"G{p}" for p in parents),
                                   tuple(self._holding(f"G{g}", i, r, n)
                                         for i, (r, n) in enumerate(self.group_holdings[g])))
                for g, parents in enumerate(self.group_parents)}

    def ancestors(self, i: int) -> list[int]:
        out = [i]
        while self.parents[out[-1]] is not None:
            out.append(self.parents[out[-1]])  # type: ignore[arg-type]
        return out

    def descendants(self, i: int) -> list[int]:
        return [j for j in range(len(self.parents)) if i in self.ancestors(j)]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    n_nodes = draw(st.integers(1, 7))
    parents: list[int | None] = [None] + [draw(st.integers(0, i - 1)) for i in range(1, n_nodes)]
    n_roles = draw(st.integers(1, 5))
    role_rights = [frozenset(draw(st.sets(st.sampled_from(RIGHTS), max_size=2))) for _ in range(n_roles)]
    role_includes = [tuple(sorted(draw(st.sets(st.integers(i + 1, n_roles - 1), max_size=2))))
                     if i < n_roles - 1 else () for i in range(n_roles)]
    n_groups = draw(st.integers(0, 5))
    group_parents = [tuple(sorted(draw(st.sets(st.integers(i + 1, n_groups - 1), max_size=2))))
                     if i < n_groups - 1 else () for i in range(n_groups)]
    holding = st.tuples(st.integers(0, n_roles - 1), st.integers(0, n_nodes - 1))
    memberships = tuple(draw(st.sets(st.integers(0, n_groups - 1), max_size=3))) if n_groups else ()
    return World(
        parents=parents,
        role_rights=role_rights,
        role_includes=role_includes,
        group_parents=group_parents,
        memberships=memberships,
        user_holdings=tuple(draw(st.lists(holding, max_size=2))),
        group_holdings=[tuple(draw(st.lists(holding, max_size=2))) for _ in range(n_groups)],
        individual=tuple(draw(st.lists(st.tuples(st.sampled_from(RIGHTS), st.integers(0, n_nodes - 1)),
                                       max_size=1))),
    )


# -- the oracle: chains straight from the definition --------------------------------------


def role_paths(world: World, role: int, right: str) -> list[tuple[int, ...]]:
    out = [()] if right in world.role_rights[role] else []
    for included in world.role_includes[role]:
        out += [(included,) + rest for rest in role_paths(world, included, right)]
    return out


def oracle(world: World, right: str, node: int) -> set[tuple]:
    """Every chain as (group path, holding index, included roles, node)."""
    if not world.active:
        return set()
    if world.access_type == "admin":
        return {("admin",)}
    above = set(world.ancestors(node))
    chains: set[tuple] = set()

    def grants(path: tuple[int, ...], holdings) -> None:
        for index, (role, at) in enumerate(holdings):
            if at in above:
                for includes in role_paths(world, role, right):
                    chains.add((path, index, role, includes, at))

    grants((), world.user_holdings)

    def walk(path: tuple[int, ...]) -> None:
        grants(path, world.group_holdings[path[-1]])
        for parent in world.group_parents[path[-1]]:
            walk(path + (parent,))

    for group in set(world.memberships):
        walk((group,))
    for granted, at in world.individual:
        if granted == right and at in above:
            chains.add(("individual", at))
    return chains


def engine_chains(world: World, right: str, node: int) -> set[tuple]:
    groups = world.groups()
    found = explain(world.model(), world.user(), groups.get, right, world.node(node))
    out: set[tuple] = set()
    for chain in found:
        kinds = [link.type for link in chain.via]
        if "access_type" in kinds:
            out.add(("admin",))
            continue
        if "individual" in kinds:
            out.add(("individual", _index(world, chain.scope)))
            continue
        path = tuple(int(link.id[1:]) for link in chain.via if link.type == "group")
        holdings = world.group_holdings[path[-1]] if path else world.user_holdings
        holder = f"G{path[-1]}" if path else "u"
        index = next(i for i, (r, n) in enumerate(holdings)
                     if str(world._holding(holder, i, r, n).grant_id) == chain.via[-1].id)
        role = int(chain.role[4:])
        out.add((path, index, role, tuple(int(name[4:]) for name in chain.includes), _index(world, chain.scope)))
    return out


def _index(world: World, scope: str) -> int:
    return 0 if scope == "instance" else int(scope.split(":n")[1])


def held(world: World) -> dict[tuple[str, int], bool]:
    model, groups = world.model(), world.groups()
    compiled = compile_user(model, world.user(), groups.get)
    return {(right, n): allowed(model, compiled, right, world.node(n))
            for right in RIGHTS for n in range(len(world.parents))}


# -- the laws ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_explain_returns_exactly_the_chains_that_exist(world):
    for right in RIGHTS:
        for node in range(len(world.parents)):
            expected = oracle(world, right, node)
            assert engine_chains(world, right, node) == expected
            assert held(world)[(right, node)] == bool(expected)


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_a_right_at_a_node_holds_at_every_descendant(world):
    rights = held(world)
    for (right, node), yes in rights.items():
        if yes:
            assert all(rights[(right, below)] for below in world.descendants(node))


@st.composite
def additions(draw: st.DrawFn, world: World) -> World:
    n_roles, n_nodes, n_groups = len(world.role_rights), len(world.parents), len(world.group_parents)
    holding = (draw(st.integers(0, n_roles - 1)), draw(st.integers(0, n_nodes - 1)))
    choices = ["user_grant", "right"] + (["membership", "group_grant", "nesting"] if n_groups else [])
    kind = draw(st.sampled_from(choices))
    if kind == "user_grant":
        return replace(world, user_holdings=world.user_holdings + (holding,))
    if kind == "right":
        return replace(world, individual=world.individual + ((draw(st.sampled_from(RIGHTS)), holding[1]),))
    group = draw(st.integers(0, n_groups - 1))
    if kind == "membership":
        return replace(world, memberships=world.memberships + (group,))
    if kind == "group_grant":
        holdings = list(world.group_holdings)
        holdings[group] = holdings[group] + (holding,)
        return replace(world, group_holdings=holdings)
    parents = list(world.group_parents)
    if group < n_groups - 1:
        parents[group] = tuple(sorted(set(parents[group]) | {draw(st.integers(group + 1, n_groups - 1))}))
    return replace(world, group_parents=parents)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_adding_a_grant_or_membership_never_removes_a_right(data):
    world = data.draw(worlds())
    bigger = data.draw(additions(world))
    before, after = held(world), held(bigger)
    assert all(after[key] for key, yes in before.items() if yes)


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_removing_the_only_chain_removes_the_right(world):
    for right in RIGHTS:
        for node in range(len(world.parents)):
            chains = oracle(world, right, node)
            if len(chains) != 1 or ("admin",) in chains:
                continue
            (chain,) = chains
            if chain[0] == "individual":
                smaller = replace(world, individual=tuple(i for i in world.individual
                                                          if i != (right, chain[1])))
            elif chain[0] == ():
                smaller = replace(world, user_holdings=tuple(
                    h for i, h in enumerate(world.user_holdings) if i != chain[1]))
            else:
                smaller = replace(world, memberships=tuple(g for g in world.memberships if g != chain[0][0]))
            assert held(smaller)[(right, node)] is False


@settings(max_examples=50, deadline=None)
@given(worlds(), st.sampled_from(["admin", "api"]), st.booleans())
def test_admins_have_every_right_and_inactive_users_none(world, access_type, active):
    world = replace(world, access_type=access_type, active=active)
    model, groups = world.model(), world.groups()
    compiled = compile_user(model, world.user(), groups.get)
    for n in range(len(world.parents)):
        node = world.node(n)
        if not active:
            assert not any(allowed(model, compiled, r, node) for r in RIGHTS)
            assert effective_rights(model, compiled, node) == frozenset()
        elif access_type == "admin":
            assert all(allowed(model, compiled, r, node) for r in RIGHTS + ["never.declared"])
        else:
            assert not any(allowed(model, compiled, r, node, interactive=True) for r in RIGHTS)
