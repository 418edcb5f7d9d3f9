"""Mapping rules: which groups and users they match and what they give."""

from __future__ import annotations

import pytest

from bridge.config import ConfigError, MappingConfig, load_config_data
from bridge.mapping.rules import RuleGrant, compiled_rules, render, source_matches


def rules(*raw: dict) -> MappingConfig:
    return load_config_data({"mapping": {"rules": list(raw)}}).mapping


@pytest.mark.parametrize("pattern, source, expected", [
    ("*", "ldap:corp", True),
    ("scim", "scim:entra", True),
    ("scim", "ldap:corp", False),
    ("scim:entra", "scim:entra", True),
    ("scim:entra", "scim:okta", False),
    ("ldap:corp", "ldap:corp", True),
    ("ldap:corp", "ldap:other", False),
])
def test_source_selects_by_the_groups_source(pattern, source, expected):
    assert source_matches(pattern, source) is expected


def test_a_group_rule_matches_the_display_name_or_the_dn_case_insensitively():
    compiled = compiled_rules(rules({"source": "*", "group": "Fleet North", "role": "fm",
                                     "scope": "company_group:north"}))
    assert compiled.for_group("scim:entra", "fleet north", None) == [RuleGrant(1, "fm", "company_group:north")]
    assert compiled.for_group("ldap:corp", "x", "FLEET NORTH") == [RuleGrant(1, "fm", "company_group:north")]
    assert compiled.for_group("ldap:corp", "Fleet South", "cn=fleet south") == []


def test_a_pattern_fills_the_scope_from_its_named_groups():
    compiled = compiled_rules(rules({"source": "ldap:corp", "group_regex": "^cn=pool-(?P<pool>[^,]+)-managers,",
                                     "role": "fleet_manager", "scope": "pool:{pool}"}))
    dn = "CN=pool-north-1-managers,OU=Groups,DC=example,DC=org"
    assert compiled.for_group("ldap:corp", "pool-north-1-managers", dn) == [
        RuleGrant(1, "fleet_manager", "pool:north-1")]
    assert compiled.for_group("scim:entra", "pool-north-1-managers", dn) == []
    assert compiled.for_group("ldap:corp", "other", "cn=other,dc=x") == []


def test_rules_are_numbered_in_config_order_and_all_matching_ones_apply():
    compiled = compiled_rules(rules(
        {"group": "A", "role": "one"},
        {"attribute": "department", "value": "Sales", "kind": "internal"},
        {"group_regex": "^A$", "role": "two", "scope": "pool:p"},
    ))
    assert compiled.for_group("scim:x", "A", None) == [RuleGrant(1, "one", "instance"), RuleGrant(3, "two", "pool:p")]


def test_an_attribute_rule_fills_the_customer_from_the_users_attributes():
    compiled = compiled_rules(rules({"attribute": "department", "value": "Customer Service",
                                     "customer": "{employeeNumber}", "kind": "external"}))
    (effect,) = compiled.for_user("scim:entra", {"department": "customer service", "employeeNumber": "12345"})
    assert (effect.index, effect.kind, effect.customer_number, effect.customer_missing) == (
        1, "external", "12345", None)
    (missing,) = compiled.for_user("scim:entra", {"department": "Customer Service"})
    assert missing.customer_number is None and missing.customer_missing == "{employeeNumber}"
    assert compiled.for_user("scim:entra", {"department": "Sales"}) == []
    assert compiled.for_user("scim:entra", {"department": ["Sales", "Customer Service"],
                                            "employeeNumber": ["7"]})[0].customer_number == "7"


def test_an_attribute_rule_can_grant_a_role_at_a_templated_scope():
    compiled = compiled_rules(rules({"attribute": "title", "value": "Pool lead", "role": "fleet_manager",
                                     "scope": "pool:{pool}"}))
    (effect,) = compiled.for_user("ldap:corp", {"title": "Pool lead", "pool": "north-1"})
    assert effect.grant == RuleGrant(1, "fleet_manager", "pool:north-1")
    (no_pool,) = compiled.for_user("ldap:corp", {"title": "Pool lead"})
    assert no_pool.grant is None


def test_render_refuses_a_missing_or_empty_field():
    assert render("pool:{pool}", {"pool": "p1"}) == "pool:p1"
    assert render("pool:{pool}", {"pool": ""}) is None
    assert render("pool:{pool}", {}) is None
    assert render("instance", {}) == "instance"


@pytest.mark.parametrize("raw, expected", [
    ({"group": "G", "customer": "1"}, "a group rule gives a role"),
    ({"group": "G", "role": "r", "kind": "external"}, "a group rule gives a role"),
    ({"attribute": "department"}, "a rule on an attribute needs a value"),
])
def test_bad_rules_are_config_errors(raw, expected):
    with pytest.raises(ConfigError) as info:
        load_config_data({"mapping": {"rules": [raw]}})
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_role_cycles_and_upside_down_scopes_are_config_errors():
    with pytest.raises(ConfigError, match="cycle: a -> b -> a"):
        load_config_data({"roles": [{"name": "a", "includes": ["b"]}, {"name": "b", "includes": ["a"]}]})
    with pytest.raises(ConfigError, match="a company_group cannot hang under a pool"):
        load_config_data({"scopes": {"nodes": [{"id": "pool:p"}, {"id": "company_group:c", "parent": "pool:p"}]}})
