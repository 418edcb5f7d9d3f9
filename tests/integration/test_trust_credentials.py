"""Trust between sources, part one: credentials belong to the owner, privilege to the config
(SQLite and PostgreSQL). Two IdPs, idp1 and idp2, as the attacks of the trust-boundaries
issue used them on 314d8f0: idp2 set the password of idp1's user and logged in as them, and
any SCIM client created portal admins with a password of its choice."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bridge.accounts.context import context_for
from bridge.accounts.credentials import set_new_password
from bridge.accounts.errors import PasswordRejected
from bridge.services import Actor
from bridge.store.models import AuditEvent, User
from tests.fixtures.accounts import FAST_HASH, GOOD_PASSWORD, accounts_config, attempt
from tests.fixtures.app import create_token
from tests.integration.test_scim_http import BULK, CORE, ENTERPRISE, PORTAL, Scim, scim_for

STRONG = "Blue-Tram-Seventy-1"


@pytest.fixture
def config():
    return accounts_config(scim={"clients": {"idp1": {"passwords": True, "customers": ["1001"]},
                                             "boss": {"admins": True}}},
                           mapping={"rules": [{"source": "*", "attribute": "department", "value": "Customer Service",
                                               "customer": "{employeeNumber}", "kind": "external"}]})


@pytest.fixture
def idp1(client, runtime):
    return scim_for(client, runtime, "idp1")


@pytest.fixture
def idp2(client, runtime):
    return scim_for(client, runtime, "idp2")


def user_row(runtime, user_id: str) -> User:
    with runtime.store.read() as session:
        return session.get(User, user_id)


def refusals(runtime) -> list[AuditEvent]:
    with runtime.store.read() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == "refused")))


# -- credentials belong to the owner ------------------------------------------------------------


def test_another_idp_cannot_set_a_password_and_log_in_as_the_user(idp1, idp2, client, admin_headers, runtime):
    victim = idp1.post("/Users", {"schemas": [CORE], "userName": "victim.one", "password": STRONG}).json
    assert attempt(client, admin_headers, "victim.one", STRONG).status_code == 200
    # idp2 may not set passwords at all: its password is left out, whatever the target.
    patched = idp2.patch(f"/Users/{victim['id']}", [{"op": "add", "path": "password", "value": "a"}])
    assert patched.status_code == 404  # another source's user is invisible
    body = idp1.get(f"/Users/{victim['id']}").json
    put = idp2.put(f"/Users/{victim['id']}", {**body, "password": "Other-Secret-22"})
    assert put.status_code == 404
    assert attempt(client, admin_headers, "victim.one", "a").status_code == 401
    assert attempt(client, admin_headers, "victim.one", "Other-Secret-22").status_code == 401
    assert attempt(client, admin_headers, "victim.one", STRONG).status_code == 200


def test_a_client_allowed_passwords_still_sets_only_its_own_users(idp1, client, runtime, admin_headers):
    """Another source's user is invisible (404); one it may adopt is not its own until it
    changes an identity field, so its password stays the owner's (409)."""
    other = Scim(client, create_token(runtime, "idp3", "scim")).post(
        "/Users", {"schemas": [CORE], "userName": "not.idp1s"}).json
    refused = idp1.patch(f"/Users/{other['id']}", [{"op": "add", "path": "password", "value": STRONG}])
    assert refused.status_code == 404
    assert attempt(client, admin_headers, "not.idp1s", STRONG).status_code == 401
    from bridge.runtime import build_runtime
    from bridge.web import create_app

    adopting = build_runtime(accounts_config(scim={"clients": {"idp1": {"passwords": True}}}, ownership={
        "rules": [{"source": "scim:idp1", "may_take_over": ["scim:idp3"]}]}), store=runtime.store)
    adopter = Scim(create_app(adopting).test_client(), idp1.headers["Authorization"].removeprefix("Bearer "))
    taken = adopter.patch(f"/Users/{other['id']}", [{"op": "add", "path": "password", "value": STRONG}])
    assert taken.status_code == 200  # an ownership rule lets it take the user over
    assert attempt(client, admin_headers, "not.idp1s", STRONG).status_code == 200


def test_a_scim_password_meets_the_policy_and_is_hashed_as_configured(idp1, client, admin_headers, runtime):
    for weak, why in (("weak", "at least"), ("carl.owner-Secret-9", "user name"),
                      ("Carl.Mail-99-xyz", "user name")):
        refused = idp1.post("/Users", {"schemas": [CORE], "userName": "carl.owner", "password": weak,
                                       "emails": [{"value": "carl.mail@example.org", "primary": True}]})
        assert refused.status_code == 400 and why in refused.json["detail"], (weak, refused.json)
    assert idp1.get('/Users?filter=userName eq "carl.owner"').json["totalResults"] == 0  # nothing kept
    created = idp1.post("/Users", {"schemas": [CORE], "userName": "carl.owner", "password": STRONG}).json
    row = user_row(runtime, created["id"])
    assert row.password_hash.startswith(f"$argon2id$v=19$m={FAST_HASH['hash_memory_kib']},"
                                        f"t={FAST_HASH['hash_time_cost']},p={FAST_HASH['hash_parallelism']}$")
    assert attempt(client, admin_headers, "carl.owner", STRONG).status_code == 200
    again = idp1.patch(f"/Users/{created['id']}", [{"op": "replace", "path": "password", "value": STRONG}])
    assert again.status_code == 400 and "used recently" in again.json["detail"]  # the history holds too


def test_a_password_a_client_may_not_set_is_left_out_and_counted(idp2, runtime, client, admin_headers):
    """Okta sends a password on every create, syncing passwords or not."""
    created = idp2.post("/Users", {"schemas": [CORE], "userName": "okta.like", "password": "1mz050nq"})
    assert created.status_code == 201
    assert user_row(runtime, created.json["id"]).password_hash is None
    assert runtime.metrics.registry.get_sample_value(
        "dirbridge_scim_ignored_total", {"client": "idp2", "kind": "password"}) == 1
    assert attempt(client, admin_headers, "okta.like", "1mz050nq").status_code == 401


def test_service_provider_config_tells_whether_passwords_can_be_set(idp1, runtime):
    assert idp1.get("/ServiceProviderConfig").json["changePassword"]["supported"] is True
    from bridge.runtime import build_runtime
    from bridge.web import create_app

    plain = build_runtime(accounts_config(), store=runtime.store)
    scim = Scim(create_app(plain).test_client(), create_token(plain, "any", "scim"))
    assert scim.get("/ServiceProviderConfig").json["changePassword"]["supported"] is False


def test_the_policy_refuses_a_password_holding_the_user_name_on_every_channel(runtime):
    """The rule lives in the policy, so the invitation page, the change at login and the admin
    API's password change all refuse it alike (they all call set_new_password)."""
    with runtime.services.unit(Actor(name="test")) as uow:
        user = uow.users.create(user_name="dora.local", email="d.mail@example.org")
        with pytest.raises(PasswordRejected, match="user name"):
            set_new_password(context_for(runtime), uow, user, "Dora.Local-2030")
        with pytest.raises(PasswordRejected, match="user name"):
            set_new_password(context_for(runtime), uow, user, "D.MAIL-Secret-42")
        set_new_password(context_for(runtime), uow, user, GOOD_PASSWORD)


# -- privilege belongs to the config --------------------------------------------------------------


def test_a_scim_client_cannot_make_admins_unless_the_config_allows_it(idp2, client, runtime, admin_headers):
    created = idp2.post("/Users", {"schemas": [CORE, PORTAL], "userName": "would.be.admin",
                                   PORTAL: {"accessType": "admin"}})
    assert created.status_code == 403 and "admins = true" in created.json["detail"]
    assert idp2.get('/Users?filter=userName eq "would.be.admin"').json["totalResults"] == 0
    plain = idp2.create_user("plain.user")
    promoted = idp2.patch(f"/Users/{plain['id']}", [{"op": "replace", "path": f"{PORTAL}:accessType",
                                                     "value": "admin"}])
    assert promoted.status_code == 403
    assert user_row(runtime, plain["id"]).access_type.value == "backend"
    bulk = idp2.post("/Bulk", {"schemas": [BULK], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "x",
         "data": {"schemas": [CORE, PORTAL], "userName": "bulk.admin", PORTAL: {"accessType": "admin"}}}]})
    assert bulk.status_code == 200 and bulk.json["Operations"][0]["status"] == "403"
    audited = [(e.actor, e.target_name) for e in refusals(runtime)]
    assert audited == [("idp2", "would.be.admin"), ("idp2", "plain.user"), ("idp2", "bulk.admin")]


def test_a_client_the_config_allows_makes_admins_and_so_does_the_local_operator(client, runtime, admin_headers):
    boss = Scim(client, create_token(runtime, "boss", "scim"))
    created = boss.post("/Users", {"schemas": [CORE, PORTAL], "userName": "real.admin",
                                   PORTAL: {"accessType": "admin"}})
    assert created.status_code == 201 and created.json[PORTAL]["accessType"] == "admin"
    local = client.post("/api/v1/users", headers=admin_headers, json={
        "user_name": "local.admin", "email": "local.admin@example.org", "access_type": "admin"})
    assert local.status_code == 201, local.json
    assert refusals(runtime) == []


def test_an_admin_api_promotion_of_an_idp_user_is_the_operators_decision(idp2, client, admin_headers, runtime):
    user = idp2.create_user("promote.me")
    promoted = client.patch(f"/api/v1/users/{user['id']}", headers=admin_headers, json={"access_type": "admin"})
    assert promoted.status_code == 200 and promoted.json["access_type"] == "admin"


# -- customers belong to the portal ------------------------------------------------------------

def _external(user_name: str, number: str) -> dict:
    return {"schemas": [CORE, PORTAL], "userName": user_name,
            PORTAL: {"kind": "external", "customerNumber": number}}


@pytest.mark.parametrize("number", ["2002", "9999", " 2002 ", "1001 2002"])
def test_a_scim_client_links_users_only_to_the_customers_the_config_names(idp1, idp2, client, admin_headers,
                                                                          runtime, number):
    """Linking a user to a customer makes it that customer's (its rights-group, RemoteUsers):
    a client names only the numbers its [scim.clients.NAME] customers lists, whether the
    customer exists yet or not (a pending number would link later)."""
    for n in ("1001", "2002"):
        client.post("/api/v1/customers", headers=admin_headers, json={"number": n, "name": f"C{n}",
                                                                       "remote_access": True})
    made = idp1.post("/Users", _external("kunde.ok", "1001"))
    assert made.status_code == 201 and made.json[PORTAL]["customerNumber"] == "1001"

    refused = idp1.post("/Users", _external("kunde.other", number))
    assert refused.status_code == 403 and "customers" in refused.json["detail"], refused.json
    moved = idp1.patch(f"/Users/{made.json['id']}", [
        {"op": "replace", "path": f"{PORTAL}:customerNumber", "value": number}])
    assert moved.status_code == 403
    assert idp2.post("/Users", _external("kunde.idp2", "1001")).status_code == 403  # idp2 names none
    with runtime.store.read() as session:
        linked = session.scalars(select(User.user_name).where(User.customer_id.is_not(None))).all()
    assert linked == ["kunde.ok"]
    assert {e.target_name for e in refusals(runtime)} >= {number.strip(), "1001"}


def test_bulk_cannot_link_a_customer_the_client_may_not_name(idp1, client, admin_headers, runtime):
    client.post("/api/v1/customers", headers=admin_headers, json={"number": "2002", "name": "C2002",
                                                                   "remote_access": True})
    bulk = idp1.post("/Bulk", {"schemas": [BULK], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": _external("bulk.kunde", "2002")}]})
    assert bulk.json["Operations"][0]["status"] == "403"
    with runtime.store.read() as session:
        assert session.scalar(select(User).where(User.user_name == "bulk.kunde")) is None


@pytest.mark.parametrize(("client_name", "number", "allowed"), [
    ("idp1", "1001", True), ("idp1", "2002", False), ("idp2", "1001", False)])
def test_a_rule_reading_the_customer_from_attributes_obeys_the_clients_list(client, runtime, admin_headers,
                                                                           client_name, number, allowed):
    """A mapping rule with ``customer = "{employeeNumber}"`` lets the source's attribute
    name the customer: for a SCIM client, only a number its config lists."""
    for n in ("1001", "2002"):
        client.post("/api/v1/customers", headers=admin_headers, json={"number": n, "name": f"C{n}",
                                                                       "remote_access": True})
    idp = scim_for(client, runtime, client_name)
    made = idp.post("/Users", {"schemas": [CORE, ENTERPRISE], "userName": f"cs.{client_name}.{number}",
                               ENTERPRISE: {"department": "Customer Service", "employeeNumber": number}})
    assert made.status_code == (201 if allowed else 403), made.json
    with runtime.store.read() as session:
        linked = session.scalars(select(User.user_name).where(User.customer_id.is_not(None))).all()
    assert linked == ([f"cs.{client_name}.{number}"] if allowed else [])


def test_only_passwords_where_a_password_stands_are_hashed_ahead(idp1, monkeypatch):
    """Hashing before the transaction must not become a way to burn CPU: a password key
    anywhere else in a body, or in a request that sets no password, is not hashed."""
    from bridge.accounts import credentials

    made: list[str] = []
    real = credentials.hash_password
    monkeypatch.setattr(credentials, "hash_password", lambda policy, p: made.append(p) or real(policy, p))
    junk = {"schemas": [CORE], "userName": "junk.hash", "urn:x:junk": [{"password": f"Junk-Pass-{i}x"}
                                                                        for i in range(40)]}
    idp1.post("/Users", junk)
    idp1.post("/Users/.search", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                                 "password": "Search-Pass-1x"})
    idp1.patch("/Users/no-such-id", [{"op": "add", "path": "nickName", "value": {"password": "Nick-Pass-1x"}}])
    assert made == []
    idp1.post("/Users", {"schemas": [CORE], "userName": "real.hash", "password": STRONG})
    assert made == [STRONG]
