"""What the SCIM application works out once and keeps (bridge.scim.app: the SCIM root by
the Host a client names, scim2-server's routing by path) stays each request's own and
bounded: a client naming a new Host or a new path at every request fills nothing, and no
request is answered with another's root. The request id it makes is unique and never the
client's choice unless well-formed."""

from __future__ import annotations

import re

import pytest

from bridge.scim.app import BASE_URL_KEPT_CHARS, ROUTED_PATH_CHARS, _base_url, _route
from tests.integration.test_scim_http import CORE, scim_for


@pytest.fixture
def idp(client, runtime):
    scim = scim_for(client, runtime, "parts")
    scim.create_user("u1")
    return scim


def test_each_request_is_answered_with_the_root_of_its_own_host(idp):
    """Without server.public_url the root comes from the Host; kept or not, it is this request's."""
    for host in ["a.example.org", "b.example.org", "a.example.org", "A.example.org:8443", "b.example.org"]:
        made = idp.post("/Users", {"schemas": [CORE], "userName": f"at-{host}-{made_count(idp)}"},
                        headers={"Host": host})
        assert made.status_code == 201, made.json
        assert made.headers["Location"].startswith(f"http://{host}/scim/v2/Users/"), (host, made.headers)
        looked_up = idp.get(f'/Users?filter=userName eq "{made.json["userName"]}"', headers={"Host": host}).json
        assert looked_up["Resources"][0]["meta"]["location"] == made.headers["Location"]


def made_count(idp) -> int:
    return int(idp.get("/Users?count=0").json["totalResults"])


def test_a_new_host_at_every_request_keeps_at_most_256_roots(idp):
    for n in range(600):
        answer = idp.get("/Users?count=0", headers={"Host": f"h{n}.example.org"})
        assert answer.status_code == 200
    assert _base_url.cache_info().currsize <= 256


def test_a_long_host_is_answered_but_not_kept(idp):
    """waitress takes headers of 256 KB: 256 such roots kept would be 128 MB of one client's text."""
    _base_url.cache_clear()
    host = "h" * 200_000 + ".example.org"
    made = idp.post("/Users", {"schemas": [CORE], "userName": "long-host"}, headers={"Host": host})
    assert made.status_code == 201 and made.headers["Location"].startswith(f"http://{host}/scim/v2/Users/")
    assert _base_url.cache_info().currsize == 0
    idp.get("/Users?count=0", headers={"Host": "h" * (BASE_URL_KEPT_CHARS - 40) + ".example.org"})
    assert _base_url.cache_info().currsize == 1  # a root within the bound is kept


def test_long_or_ever_new_paths_are_routed_without_being_kept(idp):
    before = _route.cache_info().currsize
    for n in range(3):
        long = idp.get("/Users/" + "x" * (ROUTED_PATH_CHARS + n))
        assert long.status_code == 404 and long.json["status"] == "404"
    assert _route.cache_info().currsize == before  # routed each time, not kept
    for n in range(3000):
        assert idp.get(f"/Users/no-such-{n}").status_code == 404
    assert _route.cache_info().currsize <= 1024
    assert idp.get("/Users").status_code == 200  # and the paths clients repeat are routed as before


def test_request_ids_are_made_unique_and_a_clients_is_kept_only_when_well_formed(idp):
    made = {idp.get("/Users?count=0").headers["X-Request-Id"] for _ in range(50)}
    assert len(made) == 50 and all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in made)
    assert idp.get("/Users?count=0", headers={"X-Request-Id": "req-4711"}).headers["X-Request-Id"] == "req-4711"
    hostile = idp.get("/Users?count=0", headers={"X-Request-Id": "a b\u00e9"}).headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", hostile)


def test_an_id_with_a_nul_is_no_resource_on_either_store(idp):
    """PostgreSQL refuses NUL in any text: such an id was a 500 there, a 404 on SQLite."""
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        body = {"schemas": [CORE], "userName": "u1"} if method == "PUT" else \
            {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
             "Operations": [{"op": "replace", "path": "displayName", "value": "x"}]} if method == "PATCH" else None
        for path in ("/Users/a%00b", "/Groups/a%00b"):
            answer = idp.request(method, path, body)
            assert answer.status_code == 404, (method, path, answer.status_code, answer.json)
