"""The SCIM hot path (bridge.scim.fast) against scim2-server's own answers, on SQLite and
PostgreSQL: each request is sent twice on the same data, once as the hot path answers it
and once with the hot path off (scim2-server's handler over StoreStorage), and the status,
the body and the headers a client reads must be the same.

The store holds users as Entra and Okta create them (their replayed bodies), users an LDAP
sync made, users in nested groups (direct and indirect memberships), with the enterprise
extension and a manager, non-ASCII names, and users with nothing but a userName.

Writes cannot be sent twice on the same data: a hot-path write's answer is compared with
scim2-server's GET of the resource right after it, and with scim2-server's answer to the
same write sent again (a PUT, or a PATCH that replaces, is then a no-op that keeps the
version), and the other way round.
"""

from __future__ import annotations

import copy
import json
from urllib.parse import quote

import pytest

from bridge.config import Config
from bridge.scim.app import ScimApplication
from bridge.services import Actor
from tests.fixtures.app import make_config
from tests.integration.test_scim_http import CORE, ENTERPRISE, PATCH, PORTAL, Scim, scim_for
from tests.integration.test_scim_idps import entra_user, okta_user

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
HEADERS = ("Content-Type", "Location", "Content-Location", "ETag", "Cache-Control")


@pytest.fixture
def config() -> Config:
    """Entra sees Okta's and the directory's users too (an ownership rule), not the local ones,
    and may link its users to customers (the portal extension's customerNumber)."""
    return make_config(ownership={"rules": [{"source": "scim:entra", "may_take_over": ["scim:okta", "ldap:corp"]}]},
                       scim={"clients": {"entra": {"customers": ["*"]}}},
                       ldap={"sources": [{"name": "corp", "url": ["ldaps://127.0.0.1:9"], "users_base": "ou=people",
                                          "schedule": {"full": None, "incremental": None}}]})


def scim_app(client) -> ScimApplication:
    """The ScimApplication that the Flask app mounts under /scim."""
    middleware = client.application.wsgi_app
    while not hasattr(middleware, "mounts"):
        middleware = middleware.app
    app = middleware.mounts["/scim"]
    assert isinstance(app, ScimApplication) and app.fast is not None
    return app


class Both:
    """Sends a request with the hot path on, and with it off."""

    def __init__(self, scim: Scim, app: ScimApplication):
        self.scim, self.app, self.fast = scim, app, app.fast
        self.served_fast = 0

    def send(self, fast: bool, method: str, path: str, body=None, headers=None):
        self.app.fast = self.fast if fast else None
        handled = []
        if fast:
            assert self.fast is not None
            original = self.fast.handle

            def spy(request):
                try:
                    response = original(request)
                except Exception:
                    handled.append(True)  # the hot path answered with an error
                    raise
                handled.append(response is not None)
                return response
            self.fast.handle = spy  # type: ignore[method-assign]
        try:
            response = self.scim.request(method, path, body, headers=headers)
        finally:
            self.app.fast = self.fast
            if fast:
                del self.fast.handle
        if handled and handled[0]:
            self.served_fast += 1
        return response, bool(handled and handled[0])

    def same(self, method: str, path: str, body=None, headers=None, *, fast_path: bool = True):
        """The request's answer, the same on both paths; ``fast_path``: whether the hot path
        must have served it (False: it must have left it to scim2-server)."""
        fast, served = self.send(True, method, path, body, headers)
        slow, _ = self.send(False, method, path, body, headers)
        assert served == fast_path, (method, path)
        assert_same(fast, slow, f"{method} {path}")
        return fast


def normalized(body):
    """A body whose cursors are sealed anew on each answer: compared by presence."""
    if isinstance(body, dict):
        body = dict(body)
        for key in ("nextCursor", "previousCursor"):
            if key in body:
                body[key] = "<cursor>"
    return body


def assert_same(fast, slow, what: str) -> None:
    assert fast.status_code == slow.status_code, (what, fast.json, slow.json)
    if fast.get_data() or slow.get_data():
        assert normalized(fast.json) == normalized(slow.json), what
    for name in HEADERS:
        assert fast.headers.get(name) == slow.headers.get(name), (what, name)


def ldap_users(runtime) -> list[str]:
    """Users as an LDAP sync writes them: attributes from the directory, no SCIM document."""
    actor = Actor.ldap_sync("corp")
    ids = []
    with runtime.services.unit(actor) as uow:
        ids.append(uow.users.create(
            user_name="jdoe", email="john.doe@example.org", display_name="John Doe", given_name="John",
            family_name="Doe", attributes={"title": "Engineer", "department": "R&D", "employeeNumber": "0042",
                                           "phoneNumbers": [{"value": "+49 30 1234", "type": "work"}]}).id)
        ids.append(uow.users.create(user_name="zoë.ångström", email="zoe@example.org",
                                    display_name="Zoë Ångström", given_name="Zoë", family_name="Ångström").id)
        ids.append(uow.users.create(user_name="minimal.ldap", email="minimal@example.org").id)
    return ids


@pytest.fixture
def filled(client, runtime):
    """The store described in the module docstring; the Entra client's view of it."""
    entra = scim_for(client, runtime, "entra")
    okta = scim_for(client, runtime, "okta")
    both = Both(entra, scim_app(client))
    users: dict[str, str] = {}
    boss = entra.post("/Users", {"schemas": [CORE, ENTERPRISE], "userName": "boss@example.com",
                                 "displayName": "Die Chefin", "name": {"givenName": "Ärger", "familyName": "Öztürk"},
                                 ENTERPRISE: {"department": "Vorstand", "costCenter": "C1"}}).json
    users["boss"] = boss["id"]
    for i in range(6):
        body = entra_user(f"Test_User_{i}", f"ext-{i}")
        body[ENTERPRISE] = {"department": f"Dept {i % 2}", "manager": {"value": boss["id"]},
                            "employeeNumber": str(100 + i)}
        if i % 3 == 0:
            body["name"]["givenName"] = "Jürgen"
            body["displayName"] = "Jürgen Müller-Lüdenscheidt 漢字"
        if i == 4:
            body["active"] = False
        created = entra.post("/Users", body)
        assert created.status_code == 201, created.json
        users[f"entra{i}"] = created.json["id"]
    for i in range(3):
        body = okta_user(f"okta.user{i}@okta.local")
        body.pop("password")
        created = okta.post("/Users", body)
        assert created.status_code == 201, created.json
        users[f"okta{i}"] = created.json["id"]
    bare = entra.post("/Users", {"schemas": [CORE], "userName": "bare", PORTAL: {"customerNumber": "K-1"}})
    users["bare"] = bare.json["id"]
    empty = entra.post("/Users", {"schemas": [CORE], "userName": "empty.fields", "displayName": "",
                                  "emails": [], "name": {}, "title": ""})
    assert empty.status_code == 201, empty.json
    users["empty"] = empty.json["id"]
    phones = entra.post("/Users", {"schemas": [CORE], "userName": "phones", "phoneNumbers": [
        {"value": "+1 555", "type": "mobile"}, {"value": "+1 556", "type": "work", "primary": True}],
        "addresses": [{"streetAddress": "Hauptstraße 1", "locality": "Köln", "country": "DE", "type": "work"}],
        "emails": [{"value": "emailName357", "type": "other"}, {"value": "p@example.com", "type": "work"}]})
    assert phones.status_code == 201, phones.json
    users["phones"] = phones.json["id"]
    for name, uid in zip(("ldap", "ldap.nonascii", "ldap.minimal"), ldap_users(runtime), strict=True):
        users[name] = uid
    # Nested groups: outer > middle > inner, users in each; one user in two.
    def group(name: str, members: list[dict]) -> dict:
        created = entra.post("/Groups", {"schemas": [GROUP], "displayName": name, "members": members})
        assert created.status_code == 201, created.json
        return created.json
    inner = group("Inner Ä", [{"value": users["entra0"]}, {"value": users["entra1"]}])
    middle = group("middle", [{"value": inner["id"], "type": "Group"}, {"value": users["entra2"]},
                              {"value": users["entra0"]}])
    outer = group("Outer", [{"value": middle["id"], "type": "Group"}, {"value": users["okta0"]}])
    return both, users, {"inner": inner["id"], "middle": middle["id"], "outer": outer["id"]}


def test_lookups_and_lists_are_scim2_servers(filled):
    both, users, groups = filled
    filters = [
        'userName eq "Test_User_1"', 'userName eq "TEST_USER_1"', 'userName eq "nobody"', 'userName eq "jdoe"',
        'userName eq "zoë.ångström"', 'userName eq "ZOË.ÅNGSTRÖM"', 'userName sw "test"', 'active eq false',
        'emails.value co "example"', f'groups.value eq "{groups["outer"]}"', f'groups.value eq "{groups["inner"]}"',
        f'{ENTERPRISE}:department eq "Dept 1"', f'{ENTERPRISE}:manager.value eq "{users["boss"]}"',
        'name.givenName eq "Jürgen"', 'title pr', 'externalId eq "ext-3"',
        'userName eq "a" or displayName co "ü"', 'emails[type eq "work" and value co "okta"]',
    ]
    queries = [f"filter={quote(f)}" for f in filters] + [
        "", "count=3", "startIndex=2&count=4", "startIndex=100&count=5", "count=0", "startIndex=18&count=5",
        "sortBy=userName", "sortBy=userName&sortOrder=descending&count=7", "sortBy=name.familyName",
        "sortBy=emails&count=5", "sortBy=meta.lastModified&sortOrder=descending",
        "filter=" + quote('userName sw "Test"') + "&sortBy=displayName&startIndex=2&count=2",
        "attributes=userName", "attributes=userName,emails,groups", "attributes=id", "attributes=meta",
        f"attributes={ENTERPRISE}", f"attributes=userName,{PORTAL}", "excludedAttributes=groups",
        "excludedAttributes=meta,emails,name", f"excludedAttributes={ENTERPRISE},groups",
        "excludedAttributes=id,schemas", "ATTRIBUTES=userName", "attributes=USERNAME,DisplayName",
    ]
    for query in queries:
        body = both.same("GET", f"/Users?{query}").json
        assert body["schemas"]
    assert both.same("GET", '/Users?filter=userName eq "Test_User_1"').json["totalResults"] == 1
    # What the hot path leaves to scim2-server: sub-attributes, extension attributes, both
    # parameters at once, unknown names, groups and searches elsewhere.
    for query in ("attributes=name.givenName", "attributes=emails.value", f"attributes={ENTERPRISE}:department",
                  "excludedAttributes=name.familyName", "attributes=userName&excludedAttributes=emails",
                  "attributes=kind", "attributes=nosuch"):
        both.same("GET", f"/Users?{query}", fast_path=False)
    both.same("GET", "/Groups", fast_path=False)
    both.same("GET", "/?filter=" + quote('userName sw "t"'), fast_path=False)


class Lookups:
    """Counts the searches the hot path answers as a lookup (StoreStorage.lookup_documents)."""

    def __init__(self, both: Both):
        self.storage = both.app.storage
        self.calls = 0
        original = self.storage.lookup_documents

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)
        self.storage.lookup_documents = counted  # type: ignore[method-assign]

    def same(self, both: Both, query: str, *, looked_up: bool, fast_path: bool = True):
        """GET /Users?query on both paths, the same; ``looked_up``: whether the hot path
        answered it as a lookup (else as any other search, through scim2-models' parser)."""
        before = self.calls
        answer = both.same("GET", f"/Users?{query}", fast_path=fast_path)
        assert (self.calls > before) == looked_up, query
        return answer.json


def test_lookups_are_scim2_servers(filled, client, runtime):
    """The IdPs' probe (``userName eq "x"``, ``externalId eq "x"``) answered without the filter
    parser, and every spelling next to it that it must leave to scim2-models."""
    both, users, _ = filled
    entra = both.scim
    other = scim_for(client, runtime, "other")  # a client whose users Entra may not see
    hidden = other.post("/Users", {"schemas": [CORE], "userName": "hidden.user", "externalId": "shared"})
    assert hidden.status_code == 201
    for i in range(3):  # several users with one externalId: pages and counts of a lookup
        assert entra.post("/Users", {"schemas": [CORE], "userName": f"shared{i}", "externalId": "shared"}
                          ).status_code == 201
    lookups = Lookups(both)

    def q(text: str) -> str:
        return "filter=" + quote(text)

    found = {
        'userName eq "Test_User_1"': 1, 'userName eq "TEST_USER_1"': 1, 'USERNAME Eq "test_user_1"': 1,
        'username EQ "Test_User_0"': 1,  # in nested groups: its groups come with it
        'userName eq "zoë.ångström"': 1, 'userName eq "ZOË.ÅNGSTRÖM"': 1,
        'userName eq "zoe\u0308.ångström"': 1,  # NFD: the same name
        'userName eq "ｔｅｓｔ_ｕｓｅｒ_１"': 0,  # width variant: the same identity key, not the same name
        'userName eq "okta.user0@okta.local"': 1, 'userName eq "jdoe"': 1,  # users Entra may take over
        'userName eq "hidden.user"': 0,  # another client's
        'userName eq "bare"': 1, 'userName eq "boss@example.com"': 1, 'userName eq "phones"': 1,
        'userName eq "nobody"': 0, 'userName eq ""': 0, 'userName eq "Test%User_1"': 0,
        'userName eq "İ"': 0, 'userName eq "test_user_1 "': 0,
        'externalId eq "ext-3"': 1, 'EXTERNALID eq "ext-3"': 1, 'externalId eq "EXT-3"': 0,  # caseExact
        'externalId eq "shared"': 3, 'externalId eq ""': 0,
    }
    for text, total in found.items():
        assert lookups.same(both, q(text), looked_up=True)["totalResults"] == total, text
    # Paging and projection beside the filter.
    for extra in ("&startIndex=1", "&count=1", "&count=2", "&count=3", "&startIndex=1&count=100", "&count=100000",
                  "&attributes=userName", "&attributes=userName,groups", "&excludedAttributes=groups",
                  f"&excludedAttributes={ENTERPRISE}", "&attributes=id", "&unknown=1", "&Filter=ignored"):
        for text in ('externalId eq "shared"', 'userName eq "Test_User_0"', 'userName eq "nobody"'):
            lookups.same(both, q(text) + extra, looked_up=True)
    page = lookups.same(both, q('externalId eq "shared"') + "&count=2", looked_up=True)
    assert page["totalResults"] == 3 and page["itemsPerPage"] == 2
    # What goes through scim2-models' parser as any other search: other spellings (more spaces,
    # escapes, a URN prefix, another operator or attribute, more terms), other pages, sorting.
    for text in ('userName  eq "Test_User_1"', ' userName eq "Test_User_1"', 'userName eq "Test_User_1" ',
                 'userName\teq "Test_User_1"', r'userName eq "Test\u005fUser_1"', r'userName eq "a\"b"',
                 r'userName eq "Test_User_1\\"', 'userName eq "Test_User_1\\"', f'{CORE}:userName eq "Test_User_1"',
                 'userName ne "Test_User_1"', 'userName co "Test_User_1"', 'displayName eq "Die Chefin"',
                 'userName eq "Test_User_1" and active eq true', '(userName eq "Test_User_1")', 'userName eq true',
                 'userName eq null', 'userName eq "x\u0000"', r'userName eq "x\u0000"', 'userName eq "x\x7f"',
                 'userName pr', 'name.givenName eq "Jürgen"'):
        lookups.same(both, q(text), looked_up=False)
    for extra in ("&startIndex=2", "&count=0", "&count=01", "&count=-1", "&count=1.0", "&startIndex=01",
                  "&sortBy=userName", "&sortOrder=descending", "&cursor="):
        lookups.same(both, q('externalId eq "shared"') + extra, looked_up=False)
    for extra in ("&attributes=name.givenName", "&attributes=nosuch", "&attributes=userName&excludedAttributes=emails"):
        lookups.same(both, q('externalId eq "shared"') + extra, looked_up=False, fast_path=False)
    # An unquoted value is quoted first (scim.strict = false), then looked up.
    assert lookups.same(both, "filter=" + quote("userName eq Test_User_1"), looked_up=True)["totalResults"] == 1


def test_read_documents_are_the_written_ones(filled):
    """A user read as columns (a page, a lookup, GET by id) is the document a write answers,
    which is rendered from the ORM object: a PATCH that changes nothing answers the user."""
    both, users, _ = filled
    listed = {r["id"]: r for r in both.same("GET", "/Users?count=100").json["Resources"]}
    for uid in users.values():
        written, served = both.send(True, "PATCH", f"/Users/{uid}", {"schemas": [PATCH], "Operations": []})
        assert served and written.status_code == 200, written.json
        read = both.same("GET", f"/Users/{uid}").json
        assert written.json == read == listed[uid]
        looked_up = both.same("GET", "/Users?filter=" + quote(f'userName eq "{read["userName"]}"')).json
        assert looked_up["Resources"] == [read]


def test_errors_are_scim2_servers(filled):
    both, _, _ = filled
    for query in ("filter=" + quote("userName eq"), "filter=" + quote('nosuch eq "x"'), "count=-1",
                  "startIndex=0", "sortOrder=sideways", "cursor=garbage", "cursor=&startIndex=2",
                  "filter=" + quote('userName eq "a')):
        both.same("GET", f"/Users?{query}")
    both.same("GET", "/Users/does-not-exist")
    both.same("PATCH", "/Users/does-not-exist", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "displayName", "value": "x"}]})
    both.same("POST", "/Users", {"schemas": [CORE]})
    both.same("POST", "/Users", "{not json")
    both.same("POST", "/Users", {"schemas": [CORE], "userName": "boss@example.com"})  # 409


def test_cursor_pages_are_scim2_servers(filled):
    both, users, _ = filled
    for sort in ("", "&sortBy=userName", "&sortBy=name.givenName&sortOrder=descending"):
        page = both.same("GET", f"/Users?cursor=&count=4{sort}").json
        seen = [r["id"] for r in page["Resources"]]
        while "nextCursor" in page:
            nxt = page["nextCursor"]
            page = both.same("GET", f"/Users?cursor={quote(nxt)}&count=4{sort}").json
            seen += [r["id"] for r in page["Resources"]]
            if "previousCursor" in page:
                back = both.same("GET", f"/Users?cursor={quote(page['previousCursor'])}&count=4{sort}").json
                assert back["Resources"]
        assert sorted(seen) == sorted(users.values())


def test_get_by_id_is_scim2_servers(filled):
    both, users, _ = filled
    for uid in users.values():
        body = both.same("GET", f"/Users/{uid}").json
        both.same("GET", f"/Users/{uid}?attributes=userName,groups")
        both.same("GET", f"/Users/{uid}?excludedAttributes=groups,{ENTERPRISE}")
        both.same("GET", f"/Users/{uid}", headers={"If-None-Match": body["meta"]["version"]})  # 304
        both.same("GET", f"/Users/{uid}", headers={"If-None-Match": 'W/"999"'})
        both.same("GET", f"/Users/{uid}", headers={"If-Match": 'W/"999"'})  # 412
        both.same("GET", f"/Users/{uid}?attributes=name.familyName", fast_path=False)


def read_back(both: Both, written, path: str) -> None:
    """A write's answer is what scim2-server's GET answers right after it."""
    read, _ = both.send(False, "GET", path)
    assert written.json == read.json
    for name in ("Content-Location", "ETag"):
        assert written.headers.get(name) == read.headers.get(name), name


def write_twice(both: Both, first_fast: bool, method: str, path: str, body, query: str = ""):
    """A write answered on one path, compared with scim2-server's GET after it and with the
    other path's answer to the same write sent again (a no-op)."""
    first, served = both.send(first_fast, method, f"{path}{query}", copy.deepcopy(body))
    assert served == first_fast
    assert first.status_code == 200, first.json
    read_back(both, first, f"{path}{query}")
    again, served = both.send(not first_fast, method, f"{path}{query}", copy.deepcopy(body))
    assert served == (not first_fast)
    assert_same(first, again, f"{method} {path}{query}")
    return first.json


@pytest.mark.parametrize("first_fast", [True, False])
def test_writes_are_scim2_servers(filled, first_fast):
    both, users, _ = filled
    for key in ("entra0", "okta1", "ldap", "bare", "phones"):
        path = f"/Users/{users[key]}"
        write_twice(both, first_fast, "PATCH", path, {"schemas": [PATCH], "Operations": [
            {"op": "replace", "path": "displayName", "value": f"Patched {key} ü"},
            {"op": "Replace", "path": "active", "value": "False"}]})
        write_twice(both, first_fast, "PATCH", path, {"schemas": [PATCH], "Operations": [
            {"op": "replace", "value": {"title": "Boss", "name.givenName": "Ännchen"}}]},
            query="?excludedAttributes=groups")
        write_twice(both, first_fast, "PATCH", path, {"schemas": [PATCH], "Operations": [
            {"op": "replace", "path": f"{ENTERPRISE}:department", "value": "Ops"}]}, query="?attributes=userName")
        current, _ = both.send(False, "GET", path)
        body = {k: v for k, v in current.json.items() if k not in ("meta", "groups")}
        body["displayName"] = f"Put {key}"
        body["emails"] = [{"value": f"{key}@put.example.com", "type": "work", "primary": True}]
        write_twice(both, first_fast, "PUT", path, body)
        write_twice(both, first_fast, "PUT", path, current.json)  # Okta's GET-then-PUT, groups and meta included
    # An empty PATCH (Microsoft's validator) and a PATCH with a failed precondition.
    both.same("PATCH", f"/Users/{users['entra1']}", {"schemas": [PATCH], "Operations": []})
    both.same("PATCH", f"/Users/{users['entra1']}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "displayName", "value": "never"}]}, headers={"If-Match": 'W/"999"'})
    both.same("PUT", f"/Users/{users['entra1']}", {"schemas": [CORE], "userName": "boss@example.com"})  # 409


def test_creates_are_scim2_servers(filled):
    both, _, _ = filled
    bodies = [entra_user("created.entra", "ext-created"), okta_user("created.okta@okta.local"),
              {"schemas": [CORE, ENTERPRISE, PORTAL], "userName": "created.full", "displayName": "Ünïcödé",
               ENTERPRISE: {"department": "X", "manager": {"value": "not-a-user-id"}}, PORTAL: {"kind": "internal"},
               "phoneNumbers": [{"value": "1", "type": "work"}]},
              {"schemas": [CORE], "userName": "created.bare"}]
    for fast in (True, False):
        for body in bodies:
            body = copy.deepcopy(body)
            body["userName"] = f"{'fast' if fast else 'slow'}.{body['userName']}"
            created, served = both.send(fast, "POST", "/Users", body)
            assert served == fast
            assert created.status_code == 201, created.json
            read_back(both, created, f"/Users/{created.json['id']}")
            assert created.headers["Location"] == created.headers["Content-Location"]
    # Both paths created the same users but for their names, ids and times.
    listed = both.same("GET", "/Users?filter=" + quote('userName sw "fast." or userName sw "slow."')
                       + "&sortBy=userName&count=100").json["Resources"]

    def shape(resource):
        out = json.loads(json.dumps(resource).replace(resource["id"], "ID"))
        out.pop("meta")
        out["userName"] = out["userName"].split(".", 1)[1]
        return out
    fast = [shape(r) for r in listed if r["userName"].startswith("fast.")]
    slow = [shape(r) for r in listed if r["userName"].startswith("slow.")]
    assert fast == slow and len(fast) == len(bodies)
