"""Queries past any sensible bound are 400s naming the limit, on SQLite and PostgreSQL,
never a 500 (before: startIndex=99999999999999999999 and a filter of 5,700 terms were
500s); Location and meta.location come from server.public_url, not the Host header."""

from __future__ import annotations

import logging

import pytest

from tests.fixtures.app import make_config
from tests.integration.test_scim_http import CORE, scim_for

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@pytest.fixture
def config():
    return make_config(server={"public_url": "https://portal.example.org"})


@pytest.fixture
def idp(client, runtime):
    scim = scim_for(client, runtime, "limits")
    scim.create_user("u1")
    return scim


def terms(n: int) -> str:
    return " or ".join(f'userName eq "u{i}"' for i in range(n))


@pytest.mark.parametrize(("query", "scim_type"), [
    ("startIndex=99999999999999999999", "invalidValue"),
    ("count=99999999999999999999", "invalidValue"),
    ("startIndex=-99999999999999999999", "invalidValue"),
    (f"filter={terms(101)}", "invalidFilter"),
    (f"filter={terms(5700)}", "invalidFilter"),
    ('filter=userName co "' + "a" * 9000 + '"', "invalidFilter"),
    ("filter=" + "(" * 17 + 'userName eq "u1"' + ")" * 17, "invalidFilter"),
    ("filter=" + " ".join(["active eq 1or"] * 150) + " active eq 1", "invalidFilter"),
    ("startIndex=99_999_999_999_999_999_999", "invalidValue"),
    ("startIndex=9999999999999999999.0", "invalidValue"),
])
def test_a_query_past_the_bounds_is_a_400_naming_the_limit(idp, query, scim_type):
    answer = idp.get(f"/Users?{query}")
    assert answer.status_code == 400 and answer.json["scimType"] == scim_type, (answer.status_code, answer.json)


def test_the_same_bounds_hold_for_a_search_body(idp):
    for body in ({"filter": terms(101)}, {"startIndex": 10**20}, {"filter": 'userName co "' + "a" * 9000 + '"'}):
        answer = idp.post("/Users/.search", {"schemas": [SEARCH], **body})
        assert answer.status_code == 400, (body.keys(), answer.json)


@pytest.mark.parametrize("query", [f"filter={terms(100)}", 'filter=userName eq "a or b and (c)"',
                                   "filter=" + "(" * 16 + 'userName eq "u1"' + ")" * 16,
                                   "startIndex=2147483647", "count=0", "startIndex=-3"])
def test_queries_within_the_bounds_still_answer(idp, query):
    answer = idp.get(f"/Users?{query}")
    assert answer.status_code == 200, answer.json


def test_locations_come_from_the_public_url_not_the_host_header(idp):
    made = idp.post("/Users", {"schemas": [CORE], "userName": "located"}, headers={"Host": "evil.example.net"})
    assert made.status_code == 201
    assert made.headers["Location"].startswith("https://portal.example.org/scim/v2/Users/")
    assert made.json["meta"]["location"] == made.headers["Location"]
    listed = idp.get("/Users", headers={"Host": "evil.example.net"}).json
    assert all(r["meta"]["location"].startswith("https://portal.example.org/scim/v2/") for r in listed["Resources"])


def test_a_huge_filter_makes_no_huge_log_line(idp, caplog):
    with caplog.at_level(logging.DEBUG):
        idp.get('/Users?filter=userName co "' + "a" * 114_000 + '"')
    assert caplog.records and max(len(r.getMessage()) for r in caplog.records) < 2000
