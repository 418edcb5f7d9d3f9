"""Access-type rules: what the config accepts, and which rule wins when several match."""

from __future__ import annotations

import pytest

from bridge.config import ConfigError, load_config_data
from bridge.mapping.access import AccessMatch, GroupRef, decide, group_matches
from bridge.mapping.rules import compiled_rules

CORP = {"name": "corp", "url": "ldap://localhost", "users_base": "dc=x", "tls": {"mode": "none"}}


def problems(rules: list[dict], **tables: object) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config_data({"mapping": {"rules": rules}, **tables})
    return raised.value.problems


@pytest.mark.parametrize(("rule", "says"), [
    ({"group": "G", "access_type": "api", "role": "r"}, "gives the access type only; move role"),
    ({"attribute": "a", "value": "v", "access_type": "api", "kind": "external"}, "move kind"),
    ({"group": "G", "access_type": "api", "scope": "pool:x"}, "has no scope"),
    ({"all_users": True, "access_type": "api"}, "access_type needs a group, group_regex or attribute rule"),
    ({"group": "G", "access_type": "root"}, "access_type"),
])
def test_an_access_type_rule_gives_the_access_type_and_nothing_else(rule, says):
    found = problems([rule])
    assert any(says in p for p in found), found


def test_an_admin_rule_for_a_source_that_may_not_hold_admins_is_refused_at_start():
    found = problems([{"source": "ldap:corp", "group": "PortalAdmins", "access_type": "admin"}],
                     ldap={"sources": [CORP]})
    assert any("mapping.rules[0]" in p and "admins = true for 'corp'" in p for p in found), found
    found = problems([{"source": "scim:okta", "group": "Admins", "access_type": "admin"}])
    assert any("[scim.clients.okta] admins = true" in p for p in found), found
    # allowed by the source's setting; "*" and "scim" are checked user by user instead
    load_config_data({"ldap": {"sources": [{**CORP, "admins": True}]},
                      "mapping": {"rules": [{"source": "ldap:corp", "group": "PortalAdmins", "access_type": "admin"},
                                            {"source": "*", "group": "Admins", "access_type": "admin"}]}})


def test_the_most_privileged_match_wins_then_the_lowest_number():
    assert decide([AccessMatch(1, "api"), AccessMatch(3, "admin"), AccessMatch(2, "admin")], True) == \
        decide([AccessMatch(2, "admin")], True)
    assert decide([AccessMatch(1, "api"), AccessMatch(4, "backend")], True).rule == 4
    assert decide([], True).access_type is None


def test_an_admin_match_for_a_source_that_may_not_hold_admins_is_refused_and_the_next_decides():
    decision = decide([AccessMatch(1, "admin"), AccessMatch(2, "api")], may_hold_admins=False)
    assert (decision.access_type, decision.rule, decision.refused) == ("api", 2, AccessMatch(1, "admin"))
    alone = decide([AccessMatch(1, "admin")], may_hold_admins=False)
    assert (alone.access_type, alone.refused) == (None, AccessMatch(1, "admin"))


@pytest.mark.parametrize("name", ["portal admins", "PORTAL  ADMINS", " Portal\u00a0Admins ", "Portal \u200bAdmins"])
def test_group_names_match_as_role_rules_do(name):
    rules = compiled_rules(load_config_data(
        {"mapping": {"rules": [{"group": "Portal Admins", "access_type": "api"}]}}).mapping)
    assert group_matches(rules, GroupRef("scim:entra", name, None)) == [AccessMatch(1, "api")]


def test_a_name_in_nfd_matches_a_rule_in_nfc_and_a_dn_matches_a_regex():
    config = load_config_data({"mapping": {"rules": [
        {"group": "Administraci\u00f3n", "access_type": "backend"},
        {"group_regex": "^cn=portal-admins,", "access_type": "api"}]}})
    rules = compiled_rules(config.mapping)
    assert group_matches(rules, GroupRef("local", "ADMINISTRACIO\u0301N", None)) == [AccessMatch(1, "backend")]
    assert group_matches(rules, GroupRef("ldap:corp", "x", "CN=Portal-Admins,ou=g,dc=x")) == [AccessMatch(2, "api")]
    # an access-type rule grants no role: check's rule paths never see it
    assert rules.group_rules == () and rules.attribute_rules == ()
