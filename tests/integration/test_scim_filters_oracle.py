"""The SQL filter compiler (bridge/scim/filters.py) against an oracle: scim2-models'
own in-memory evaluation (``ScimFilter.match``), the one scim2-server's memory storage
uses. Each filter is answered both ways over the same users, on SQLite and PostgreSQL,
and the sets must agree. (Where dirbridge is deliberately coarser, the identity key of
``userName eq``, the filters here avoid the difference; test_trust_names covers it.)"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from scim2_models import ScimFilter
from scim2_server.utils import parametrize

from bridge.scim.schema import ScimUser
from tests.integration.test_scim_http import CORE, ENTERPRISE, scim_for

PEOPLE = [
    ("anna.smith", "Anna Smith", "Anna", "Smith", [("anna@example.com", "work", True)], True, "Sales", "E100"),
    ("bob.jones", "Bob Jones", "Bob", "Jones", [("bob@example.org", "work", True), ("bj@home.net", "home", False)],
     True, "IT", "E200"),
    ("carla.ruiz", None, "Carla", "Ruiz", [("carla@example.com", "home", True)], False, "Sales", "E300"),
    ("dieter.ölmann", "Dieter Ölmann", "Dieter", "Ölmann", [], True, None, None),
    ("Eve.Adams", "eve adams", "Eve", "Adams", [("EVE@EXAMPLE.COM", "work", False)], True, "it", "E050"),
    ("frank", "Frank", None, None, [("frank@example.net", "other", True)], False, None, "E999"),
]

FILTERS = [
    'userName sw "a"', 'userName ew "s"', 'userName co "."', 'userName co "ÖL"', 'userName gt "c"',
    'userName le "bob.jones"', 'userName ne "frank"', 'displayName eq "anna smith"', 'displayName pr',
    'not (displayName pr)', 'name.givenName sw "E"', 'name.familyName co "m"', 'name pr',
    'active eq true', 'active eq false', 'active ne true',
    'emails pr', 'not (emails pr)', 'emails co "example.com"', 'emails.value ew ".org"',
    'emails[type eq "work"]', 'emails[type eq "work" and value co "@example.com"]',
    'emails[primary eq true and type eq "home"]', 'emails[not (type eq "work")]',
    'emails.type eq "home"', 'emails.primary eq false',
    f'{ENTERPRISE}:department eq "sales"', f'{ENTERPRISE}:department pr',
    f'{ENTERPRISE}:employeeNumber gt "E100"', f'{ENTERPRISE}:employeeNumber lt "E200"',
    f'not ({ENTERPRISE}:department eq "it")',
    'userName sw "a" or userName sw "b"', 'active eq true and emails co "example"',
    '(userName sw "a" or userName sw "e") and not (active eq false)',
    'displayName co "a" and (name.familyName sw "S" or name.familyName sw "R")',
    'title pr', 'nickName eq "x"', 'userName eq "nobody"',
]


@pytest.fixture
def idp(client, runtime):
    scim = scim_for(client, runtime, "oracle")
    for user_name, display, given, family, emails, active, dept, number in PEOPLE:
        body: dict = {"schemas": [CORE, ENTERPRISE], "userName": user_name, "active": active,
                      "emails": [{"value": v, "type": t, "primary": p} for v, t, p in emails]}
        if display:
            body["displayName"] = display
        name = {k: v for k, v in (("givenName", given), ("familyName", family)) if v}
        if name:
            body["name"] = name
        extension = {k: v for k, v in (("department", dept), ("employeeNumber", number)) if v}
        if extension:
            body[ENTERPRISE] = extension
        scim.create_user(user_name, **{k: v for k, v in body.items() if k not in ("schemas", "userName")})
    return scim


def test_sql_filters_agree_with_the_in_memory_oracle(idp):
    listed = idp.get("/Users?count=1000").json["Resources"]
    resources = [ScimUser.model_validate(doc) for doc in listed]
    assert len(resources) == len(PEOPLE)
    disagreements, sizes = [], []
    for text in FILTERS:
        oracle = {r.user_name for r in resources if parametrize(ScimFilter, ScimUser)(text).match(r)}
        answer = idp.get(f"/Users?count=1000&filter={quote(text)}")
        assert answer.status_code == 200, (text, answer.json)
        found = {doc["userName"] for doc in answer.json["Resources"]}
        if found != oracle:
            disagreements.append((text, sorted(found), sorted(oracle)))
        sizes.append(len(oracle))
    assert disagreements == []
    # the filters tell the users apart: most match some but not all of them
    assert sum(1 for n in sizes if 0 < n < len(PEOPLE)) >= 25, sizes
