"""Searches at the server root (RFC 7644 §3.4.3) and cursor paging (RFC 9865) over HTTP,
on SQLite and PostgreSQL: Users and Groups filtered, sorted and paged as one collection,
cursors that return every resource once while others come and go, and cursors the
server did not issue for this query refused with 400."""

from __future__ import annotations

import stat
import time
import types
from urllib.parse import quote

import pytest
from pydantic import SecretStr

from tests.fixtures.app import create_token
from tests.integration.test_scim_http import Scim

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@pytest.fixture
def scim(client, runtime):
    return Scim(client, create_token(runtime, "entra", "scim"))


def search(scim: Scim, path: str = "/.search", **parameters):
    return scim.post(path, {"schemas": [SEARCH], **parameters})


def label(resource: dict) -> str:
    return resource.get("userName") or resource["displayName"]


def labels(response) -> list[str]:
    assert response.status_code == 200, response.json
    return [label(r) for r in response.json["Resources"]]


def make_group(scim: Scim, name: str, **attributes) -> dict:
    response = scim.post("/Groups", {"displayName": name, **attributes})
    assert response.status_code == 201, response.json
    return response.json


def walk(scim: Scim, path: str, query: str, count: int) -> list[dict]:
    """Every page of a search paged by cursor (GET), from the first one."""
    pages = []
    cursor = ""
    while cursor is not None:
        response = scim.get(f"{path}?{query}&count={count}&cursor={quote(cursor)}")
        assert response.status_code == 200, response.json
        pages.append(response.json)
        cursor = response.json.get("nextCursor")
    return pages


def ids(pages: list[dict]) -> list[str]:
    return [r["id"] for page in pages for r in page["Resources"]]


# -- searches at the root ----------------------------------------------------------------


def test_a_root_search_filters_sorts_and_pages_users_and_groups_as_one_collection(scim):
    for user_name, display in [("alice@example.com", "Alice"), ("anna@example.com", "anna"),
                               ("bob@example.com", "Bob")]:
        scim.create_user(user_name, displayName=display)
    for name in ("Admins", "auditors", "Board"):
        make_group(scim, name)

    found = search(scim, filter='displayName sw "A"', sortBy="displayName")
    assert found.json["totalResults"] == 4 and found.json["startIndex"] == 1
    assert labels(found) == ["Admins", "alice@example.com", "anna@example.com", "auditors"]
    assert [r["meta"]["resourceType"] for r in found.json["Resources"]] == ["Group", "User", "User", "Group"]
    assert [r["meta"]["location"].split("/scim/v2/")[1].split("/")[0] for r in found.json["Resources"]] == [
        "Groups", "Users", "Users", "Groups"]

    paged = search(scim, filter='displayName sw "A"', sortBy="displayName", startIndex=2, count=2)
    assert paged.json["totalResults"] == 4
    assert paged.json["startIndex"] == 2 and paged.json["itemsPerPage"] == 2
    assert labels(paged) == ["alice@example.com", "anna@example.com"]

    descending = search(scim, filter='displayName sw "A"', sortBy="displayName", sortOrder="descending")
    assert labels(descending) == ["auditors", "anna@example.com", "alice@example.com", "Admins"]

    # GET at the root is the same search (RFC 7644 §3.4.2.1).
    starts_with_a = quote('displayName sw "A"')
    by_get = scim.get(f"/?filter={starts_with_a}&sortBy=displayName&startIndex=3&count=5")
    assert by_get.json["totalResults"] == 4 and labels(by_get) == ["anna@example.com", "auditors"]


def test_an_attribute_one_type_lacks_matches_none_of_its_resources_and_sorts_as_missing(scim):
    scim.create_user("carol@example.com")
    scim.create_user("dave@example.com")
    make_group(scim, "Admins")

    users_only = search(scim, filter="userName pr")
    assert users_only.json["totalResults"] == 2
    assert {r["meta"]["resourceType"] for r in users_only.json["Resources"]} == {"User"}
    groups_only = search(scim, filter='members pr or displayName eq "Admins"')
    assert {r["meta"]["resourceType"] for r in groups_only.json["Resources"]} == {"Group"}

    # Admins has no userName (the portal's own groups hold none of this client's users: invisible)
    everything = search(scim, sortBy="userName")
    assert everything.json["totalResults"] == 3
    assert labels(everything)[:2] == ["carol@example.com", "dave@example.com"]  # missing values last
    assert labels(search(scim, sortBy="userName", sortOrder="descending"))[-2:] == [
        "dave@example.com", "carol@example.com"]  # ... and first when descending


# -- cursors -----------------------------------------------------------------------------


@pytest.mark.parametrize("sort", ["", "&sortBy=userName&sortOrder=descending"])
def test_cursor_paging_returns_every_user_once_while_users_come_and_go(scim, sort):
    originals = {scim.create_user(f"user{n:02}@example.com")["id"] for n in range(25)}
    query = quote('userName sw "user"') + sort
    seen: list[str] = []
    deleted_unseen: set[str] = set()
    created = 0
    cursor = ""
    while True:
        page = scim.get(f"/Users?filter={query}&count=10&cursor={quote(cursor)}")
        assert page.status_code == 200, page.json
        body = page.json
        assert "startIndex" not in body and len(body["Resources"]) <= 10
        assert ("previousCursor" in body) == bool(seen)
        seen += [r["id"] for r in body["Resources"]]
        cursor = body.get("nextCursor")
        if cursor is None:
            break
        # Between pages: the user the next page starts after goes, one not returned yet goes,
        # and one comes.
        assert scim.delete(f"/Users/{seen[-1]}").status_code == 204
        unseen = sorted(originals - set(seen) - deleted_unseen)
        assert scim.delete(f"/Users/{unseen[len(unseen) // 2]}").status_code == 204
        deleted_unseen.add(unseen[len(unseen) // 2])
        scim.create_user(f"user-new{created}@example.com")
        created += 1

    assert len(seen) == len(set(seen))  # nothing twice
    assert originals - deleted_unseen <= set(seen)  # every user that stayed, once
    assert not deleted_unseen & set(seen)
    assert created >= 2


def test_cursors_page_users_and_groups_at_the_root_forward_and_back(scim):
    for n, display in enumerate(["b", "D", None, "a", "c"]):
        scim.create_user(f"u{n}@example.com", **({"displayName": display} if display else {}))
    for name in ("B", "d", "A2"):
        make_group(scim, name, externalId=f"ext-{name}")
    query = "sortBy=displayName"
    everything = scim.get(f"/?{query}&count=1000").json["Resources"]

    pages = walk(scim, "/", query, 3)
    assert ids(pages) == [r["id"] for r in everything]  # the index order, page by page
    assert len(ids(pages)) == 8  # the portal's groups hold none of the client's users: not its to see
    assert "previousCursor" not in pages[0] and "nextCursor" not in pages[-1]

    back, page = [], pages[-1]
    while "previousCursor" in page:
        page = scim.get(f"/?{query}&count=3&cursor={quote(page['previousCursor'])}").json
        back.append(page)
    assert [[r["id"] for r in p["Resources"]] for p in reversed(back)] == [
        [r["id"] for r in p["Resources"]] for p in pages[:-1]]


@pytest.mark.parametrize("sort_by", ["displayName", "userName", "emails", "meta.created", "active",
                                     "externalId", "id"])
@pytest.mark.parametrize("sort_order", ["ascending", "descending"])
def test_cursor_pages_follow_the_index_order_for_every_kind_of_sort_value(scim, sort_by, sort_order):
    """Strings, timestamps, booleans and missing values: the keyset compares each as it sorts."""
    for n in range(4):
        scim.create_user(f"s{n}@example.com", displayName=f"S{n % 2}", active=bool(n % 2),
                         emails=[{"value": f"m{n % 2}@example.com"}] if n % 3 else [],
                         **({"externalId": f"x{n % 3}"} if n else {}))
    make_group(scim, "S1", externalId="x1")
    query = f"sortBy={sort_by}&sortOrder={sort_order}"
    for path in ("/", "/Users"):
        expected = [r["id"] for r in scim.get(f"{path}?{query}&count=1000").json["Resources"]]
        assert ids(walk(scim, path, query, 2)) == expected


def test_a_cursor_count_of_zero_returns_no_resource_and_no_cursor(scim):
    scim.create_user("zero@example.com")
    body = scim.get("/Users?cursor=&count=0").json
    assert body["totalResults"] == 1 and body.get("Resources", []) == []
    assert "nextCursor" not in body and "previousCursor" not in body


def test_a_cursor_the_server_did_not_issue_for_this_query_is_refused(scim):
    for n in range(3):
        scim.create_user(f"c{n}@example.com")
    make_group(scim, "Cursors")
    c, d = quote('userName sw "c"'), quote('userName sw "d"')
    first = scim.get(f"/Users?filter={c}&count=1&cursor=").json
    cursor = first["nextCursor"]
    assert scim.get(f"/Users?filter={c}&count=1&cursor={cursor}").status_code == 200

    def refused(path: str, query: str) -> str:
        response = scim.get(f"{path}?{query}")
        assert response.status_code == 400, response.json
        assert response.json["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        return response.json["scimType"]

    tampered = cursor[:20] + ("A" if cursor[20] != "A" else "B") + cursor[21:]
    assert refused("/Users", f"filter={c}&count=1&cursor={tampered}") == "invalidCursor"
    assert refused("/Users", "count=1&cursor=bm90LWEtY3Vyc29y") == "invalidCursor"
    # Another filter, another sort, another resource type, the root: another query.
    assert refused("/Users", f"filter={d}&count=1&cursor={cursor}") == "invalidCursor"
    assert refused("/Users", f"filter={c}&sortBy=userName&count=1&cursor={cursor}") \
        == "invalidCursor"
    assert refused("/Groups", f"count=1&cursor={cursor}") == "invalidCursor"
    assert refused("/", f"filter={c}&count=1&cursor={cursor}") == "invalidCursor"
    posted = search(scim, "/Users/.search", filter='userName sw "d"', count=1, cursor=cursor)
    assert posted.status_code == 400 and posted.json["scimType"] == "invalidCursor"
    # The same query with another count (RFC 9865 §2.3).
    assert refused("/Users", f"filter={c}&count=2&cursor={cursor}") == "invalidCount"
    # A cursor and a startIndex at once.
    assert scim.get(f"/Users?count=1&startIndex=2&cursor={cursor}").status_code == 400


def test_an_expired_cursor_is_refused(scim, monkeypatch):
    import scim2_server.cursor

    scim.create_user("e1@example.com")
    scim.create_user("e2@example.com")
    cursor = scim.get("/Users?count=1&cursor=").json["nextCursor"]
    later = time.time() + 3601  # scim.cursor_timeout defaults to an hour
    monkeypatch.setattr(scim2_server.cursor, "time", types.SimpleNamespace(time=lambda: later))
    response = scim.get(f"/Users?count=1&cursor={cursor}")
    assert response.status_code == 400 and response.json["scimType"] == "expiredCursor"


def test_the_cursor_secret_is_kept_in_the_data_dir_unless_configured(scim, runtime, store):
    from bridge.runtime import build_runtime
    from bridge.web import create_app

    scim.create_user("k1@example.com")
    scim.create_user("k2@example.com")
    cursor = scim.get("/Users?count=1&cursor=").json["nextCursor"]
    kept = runtime.config.data_dir / "scim-cursor.secret"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    token = scim.headers["Authorization"].split()[1]

    # Another process with the same data directory reads the same secret.
    other = Scim(create_app(runtime).test_client(), token)
    assert other.get(f"/Users?count=1&cursor={cursor}").status_code == 200

    # A configured secret replaces it: the cursors of the kept one are refused.
    config = runtime.config.model_copy(update={"scim": runtime.config.scim.model_copy(
        update={"cursor_secret": SecretStr("s" * 32)})})
    configured = Scim(create_app(build_runtime(config, store=store)).test_client(), token)
    refused = configured.get(f"/Users?count=1&cursor={cursor}")
    assert refused.status_code == 400 and refused.json["scimType"] == "invalidCursor"
    assert configured.get("/Users?count=1&cursor=").status_code == 200


def test_the_service_provider_config_announces_both_paginations(client):
    config = client.get("/scim/v2/ServiceProviderConfig").json
    assert config["pagination"] == {"cursor": True, "index": True, "defaultPaginationMethod": "index",
                                    "maxPageSize": 1000, "cursorTimeout": 3600}


def test_without_cursor_or_start_index_a_search_pages_by_index(scim):
    scim.create_user("i1@example.com")
    body = scim.get("/Users?count=1").json
    assert body["startIndex"] == 1 and "nextCursor" not in body


def test_the_kept_cursor_secret_is_made_once_and_a_broken_one_is_not_replaced(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from bridge.scim.secret import _kept_secret

    path = tmp_path / "data" / "scim-cursor.secret"
    with ThreadPoolExecutor(8) as pool:
        made = set(pool.map(lambda _: _kept_secret(path), range(16)))
    assert len(made) == 1 and path.read_bytes().strip() == made.pop()
    assert [p.name for p in path.parent.iterdir()] == ["scim-cursor.secret"]  # nothing left aside
    path.write_text("")
    with pytest.raises(RuntimeError, match="no usable secret"):
        _kept_secret(path)
    assert path.read_text() == ""
