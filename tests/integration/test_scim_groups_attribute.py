"""The User's read-only ``groups`` attribute (RFC 7643 §4.1.2) on SQLite and PostgreSQL: every
group a user is in, directly ("direct") and through nested groups ("indirect"), whatever made
the membership (a SCIM client, an LDAP sync, the customer rules, a sales assignment);
filterable; and a page of users with their groups costs a fixed number of statements."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event

from bridge.config import load_config_data
from bridge.ldap.sync import run_sync
from bridge.services import Actor
from tests.fixtures.app import create_token, make_config
from tests.fixtures.slapd import source_settings
from tests.integration.test_scim_http import CORE, PORTAL, Scim

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
OPERATOR = Actor(name="cli:test", channel="cli")



@pytest.fixture
def config():
    return make_config(scim={"clients": {"entra": {"customers": ["12345"]}}})

def groups(document: dict) -> dict[str, str]:
    """display name -> type"""
    return {g["display"]: g["type"] for g in document.get("groups", [])}


def make_group(scim: Scim, name: str, *members: str) -> str:
    response = scim.post("/Groups", {"schemas": [GROUP], "displayName": name,
                                     "members": [{"value": m} for m in members]})
    assert response.status_code == 201, response.json
    return response.json["id"]


@contextmanager
def statements(runtime):
    """Counts the SQL statements sent while the block runs."""
    seen: list[str] = []

    def count(conn, cursor, statement, *args):  # noqa: ANN001
        seen.append(statement)

    event.listen(runtime.store.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(runtime.store.engine, "before_cursor_execute", count)


def test_direct_and_nested_memberships(client, runtime):
    entra = Scim(client, create_token(runtime, "entra", "scim"))
    uma, vic, wes = (entra.create_user(n)["id"] for n in ("uma", "vic", "wes"))
    team = make_group(entra, "Team", uma)
    department = make_group(entra, "Department", team, vic)
    company = make_group(entra, "Company", department, uma)

    assert groups(entra.get(f"/Users/{uma}").json) == {"Team": "direct", "Company": "direct",
                                                      "Department": "indirect"}
    assert groups(entra.get(f"/Users/{vic}").json) == {"Department": "direct", "Company": "indirect"}
    assert "groups" not in entra.get(f"/Users/{wes}").json
    listed = {u["userName"]: groups(u) for u in entra.get("/Users").json["Resources"]}
    assert listed["uma"] == {"Team": "direct", "Company": "direct", "Department": "indirect"}

    # groups.value eq: the group's members, nested ones included (any case of the id).
    in_company = entra.get(f'/Users?filter=groups.value eq "{company.upper()}"').json
    assert {u["userName"] for u in in_company["Resources"]} == {"uma", "vic"}
    in_team = entra.get(f'/Users?filter=groups.value eq "{team}"').json
    assert {u["userName"] for u in in_team["Resources"]} == {"uma"}
    indirect = entra.get(f'/Users?filter=groups[value eq "{company}" and type eq "indirect"]').json
    assert {u["userName"] for u in indirect["Resources"]} == {"vic"}
    by_name = entra.get('/Users?filter=groups.display eq "department"').json
    assert {u["userName"] for u in by_name["Resources"]} == {"uma", "vic"}
    assert entra.get(f'/Users?filter=not (groups.value eq "{company}")').json["totalResults"] == 1

    # A change of the nesting shows at once.
    entra.patch(f"/Groups/{department}", [{"op": "remove", "path": f'members[value eq "{team}"]'}])
    assert groups(entra.get(f"/Users/{uma}").json) == {"Team": "direct", "Company": "direct"}

    lean = entra.get(f"/Users/{uma}?excludedAttributes=groups").json
    assert "groups" not in lean


def test_memberships_made_by_the_customer_rules_and_sales_assignments(client, runtime, admin_headers):
    entra = Scim(client, create_token(runtime, "entra", "scim"))
    client.post("/api/v1/customers", headers=admin_headers,
                json={"number": "12345", "name": "Heidelberg", "remote_access": True})
    anna = entra.post("/Users", {"schemas": [CORE, PORTAL], "userName": "anna.kunde",
                                 PORTAL: {"kind": "external", "customerNumber": "12345"}}).json
    rep = entra.create_user("rita.sales")
    sales_group = make_group(entra, "CustomerSalesRepresentatives", rep["id"])
    assigned = client.put(f"/api/v1/customers/12345/sales-representatives/{rep['id']}", headers=admin_headers)
    assert assigned.status_code == 200, assigned.json

    assert groups(entra.get(f"/Users/{anna['id']}").json) == {"X12345-Heidelberg": "direct",
                                                             "RemoteUsers": "direct"}
    assert groups(entra.get(f"/Users/{rep['id']}").json) == {
        "CustomerSalesRepresentatives": "direct", "X12345-Heidelberg": "direct", "RemoteUsers": "direct",
        "RemoteAdministrators": "direct"}
    # Rights-groups and portal groups show their members over SCIM too.
    remote_users = entra.get('/Groups?filter=displayName eq "RemoteUsers"').json["Resources"][0]
    assert {m["value"] for m in remote_users["members"]} == {anna["id"], rep["id"]}
    assert entra.get(f'/Groups?filter=members.value eq "{anna["id"]}"').json["totalResults"] == 2
    assert sales_group  # the IdP's own group is one of the rep's groups above

    client.delete(f"/api/v1/customers/12345/sales-representatives/{rep['id']}", headers=admin_headers)
    assert groups(entra.get(f"/Users/{rep['id']}").json) == {"CustomerSalesRepresentatives": "direct"}


def test_memberships_made_by_an_ldap_sync(client, store, slapd):
    from bridge.runtime import build_runtime
    from bridge.web import create_app

    # An IdP sees directory users only when an ownership rule lets it adopt them.
    rt = build_runtime(load_config_data({"ldap": {"sources": [source_settings(slapd)]}, "ownership": {
        "rules": [{"source": "scim:entra", "may_take_over": ["ldap:corp"]}]}}), store=store)
    assert run_sync(rt, "corp").status == "ok"
    scim = Scim(create_app(rt).test_client(), create_token(rt, "entra", "scim"))
    carol = scim.get('/Users?filter=userName eq "carol"').json["Resources"][0]
    # developers holds carol; engineering holds developers (the seed of tests.fixtures.slapd).
    assert groups(carol)["developers"] == "direct" and groups(carol)["engineering"] == "indirect"


def test_a_page_of_users_with_their_groups_costs_a_fixed_number_of_statements(runtime):
    with runtime.services.unit(Actor.scim_client("entra")) as uow:  # the reading client's own
        ids = [uow.users.create(user_name=f"user{i:03}", email=f"user{i:03}@example.org").id for i in range(100)]
        top = uow.groups.create("top")
        middle = uow.groups.create("middle")
        uow.groups.change_members(top, add_groups=[middle.id])
        for index, user_id in enumerate(ids):
            group = uow.groups.create(f"team{index:03}")
            uow.groups.change_members(group, add_users=[user_id])
            uow.groups.change_members(middle, add_groups=[group.id])

    from bridge.web import create_app

    scim = Scim(create_app(runtime).test_client(), create_token(runtime, "entra", "scim"))
    scim.get("/Users?count=1")  # the first request of a client records it (bridge.web.scim_activity)
    counts = {}
    for size in (10, 100):
        with statements(runtime) as seen:
            page = scim.get(f"/Users?count={size}&sortBy=userName")
        assert page.status_code == 200 and len(page.json["Resources"]) == size
        assert groups(page.json["Resources"][0]) == {"team000": "direct", "middle": "indirect", "top": "indirect"}
        counts[size] = len(seen)
    assert counts[10] == counts[100], counts
    # the token, the count, the page, the groups, which of them the client may see (and BEGINs)
    assert counts[100] <= 8, counts


def test_nesting_is_followed_to_a_bounded_depth_and_ends_on_a_cycle(client, runtime):
    """Each walk stops at MAX_NESTING levels, so another client's chain of thousands of groups
    costs no more than that (bench/scim_groups_bench.py measures it); a cycle written
    behind the service layer's back still ends."""
    from sqlalchemy import insert

    from bridge.services.memberships import MAX_NESTING
    from bridge.store.models import GroupGroupMember

    entra = Scim(client, create_token(runtime, "chain", "scim"))  # the chain's own client
    deep = entra.create_user("deep.user")["id"]
    with runtime.services.unit(Actor.scim_client("chain")) as uow:
        chain = uow.groups.create_many([{"display_name": f"level{n:02}"} for n in range(MAX_NESTING + 5)])
        uow.groups.change_members(uow.groups.get(chain[0]), add_users=[deep])
        for child, parent in zip(chain, chain[1:], strict=False):
            uow.groups.change_members(uow.groups.get(parent), add_groups=[child])
    shown = groups(entra.get(f"/Users/{deep}").json)
    assert shown["level00"] == "direct"
    assert sorted(n for n, t in shown.items() if t == "indirect") == [f"level{n:02}" for n in range(1, MAX_NESTING + 1)]
    top = entra.get(f'/Users?filter=groups.value eq "{chain[MAX_NESTING]}"').json
    beyond = entra.get(f'/Users?filter=groups.value eq "{chain[MAX_NESTING + 1]}"').json
    assert top["totalResults"] == 1 and beyond["totalResults"] == 0

    with runtime.store.write() as session:  # level02 inside level00: a cycle the service refuses
        session.execute(insert(GroupGroupMember.__table__).values(group_id=chain[0], child_group_id=chain[2]))
    looped = groups(entra.get(f"/Users/{deep}").json)
    assert looped["level00"] == "direct" and looped["level02"] == "indirect"
    assert entra.get('/Users?filter=groups.display eq "level03"').json["totalResults"] == 1
