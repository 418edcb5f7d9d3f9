"""Values that would lock a user out or break a mail are refused with a 400 naming the
field, on every channel (the admin API, SCIM, the CLI), and activation never reports what
did not happen."""

from __future__ import annotations

import pytest

from tests.fixtures.app import create_token, run_cli
from tests.integration.test_scim_http import CORE, Scim


def _local(client, headers, name: str = "val.user") -> str:  # type: ignore[no-untyped-def]
    made = client.post("/api/v1/users", json={"user_name": name, "email": f"{name}@example.org"}, headers=headers)
    assert made.status_code == 201, made.json
    return str(made.json["id"])


@pytest.mark.parametrize(("field", "value", "says"), [
    ("ip_allowlist", ["not-an-ip"], "'not-an-ip' is neither an IP address nor a network"),
    ("ip_allowlist", ["10.0.0.0/33"], "'10.0.0.0/33'"),
    ("timezone", "Mars/Olympus_Mons", "no IANA time zone"),
    ("timezone", "CEST", "no IANA time zone"),
    ("preferred_language", "english!", "no BCP 47 language tag"),
    ("preferred_language", "en_US", "no BCP 47 language tag"),
    ("email", None, "a local user needs an e-mail address"),
    ("email", "not-an-address", "is not an e-mail address"),
])
def test_the_admin_api_refuses_what_breaks_a_user(client, admin_headers, field, value, says):
    user_id = _local(client, admin_headers)
    answer = client.patch(f"/api/v1/users/{user_id}", json={field: value}, headers=admin_headers)
    assert answer.status_code == 400, answer.json
    assert answer.json["error"]["field"] == field and says in answer.json["error"]["message"]
    assert client.get(f"/api/v1/users/{user_id}", headers=admin_headers).json[field] != value  # nothing kept


def test_good_values_are_kept_in_their_canonical_form(client, admin_headers):
    user_id = _local(client, admin_headers)
    answer = client.patch(f"/api/v1/users/{user_id}", json={
        "ip_allowlist": [" 10.1.2.3 ", "10.0.0.7/8", "2001:DB8::/32", "10.1.2.3"],
        "timezone": "Europe/Berlin", "preferred_language": "de-CH"}, headers=admin_headers)
    assert answer.status_code == 200, answer.json
    assert answer.json["ip_allowlist"] == ["10.1.2.3", "10.0.0.0/8", "2001:db8::/32"]
    assert (answer.json["timezone"], answer.json["preferred_language"]) == ("Europe/Berlin", "de-CH")


def test_an_idps_time_zone_and_language_are_its_data_and_kept_as_sent(client, runtime):
    """The operator's own users get IANA zones and BCP 47 tags (above); an IdP's values are
    its directory's data about its users, kept as sent (the SCIM conformance suite sends
    any string, and an IdP whose directory holds 'W. Europe Standard Time' must not fail)."""
    scim = Scim(client, create_token(runtime, "entra", "scim"))
    made = scim.post("/Users", {"schemas": [CORE], "userName": "tz@example.com",
                                "timezone": "W. Europe Standard Time", "preferredLanguage": "en_US"})
    assert made.status_code == 201, made.json
    assert (made.json["timezone"], made.json["preferredLanguage"]) == ("W. Europe Standard Time", "en_US")
    ip = scim.post("/Users", {"schemas": [CORE], "userName": "ip@example.com"})
    assert ip.status_code == 201  # (an allow-list is the operator's: SCIM does not set one)


def test_activating_a_user_that_stays_inactive_is_a_409_with_the_reason(client, admin_headers, tmp_path):
    customer = client.post("/api/v1/customers", json={"number": "4711", "name": "Druckerei", "remote_access": False},
                           headers=admin_headers).json
    user = client.post("/api/v1/users", json={"user_name": "ext.user", "email": "ext@example.org",
                                              "kind": "external", "customer_id": customer["id"]},
                       headers=admin_headers).json
    assert user["active"] is False  # the customer's remote access is off
    answer = client.patch(f"/api/v1/users/{user['id']}", json={"active": True}, headers=admin_headers)
    assert answer.status_code == 409 and answer.json["error"]["field"] == "active"
    assert "remote access of customer 4711 is off" in answer.json["error"]["message"]
    assert client.get(f"/api/v1/users/{user['id']}", headers=admin_headers).json["active"] is False


def test_the_cli_says_when_activation_did_not_happen(tmp_path):
    config = tmp_path / "dirbridge.toml"
    config.write_text('data_dir = "data"\n')
    from bridge.config import load_config_data
    from bridge.runtime import build_runtime
    from bridge.services import Actor

    rt = build_runtime(load_config_data({"data_dir": str(tmp_path / "data")}))
    with rt.services.unit(Actor(name="test")) as uow:
        customer = uow.customers.create(number="4712", name="Offline", remote_access=False)
        uow.users.create(user_name="ext.cli", email="e@example.org", kind="external", customer_id=customer.id)
    rt.store.dispose()
    activated = run_cli("user", "activate", "ext.cli", "--config", str(config), cwd=tmp_path)
    assert activated.returncode == 1 and "stays inactive" in activated.stderr and "activated" not in activated.stdout


def test_users_by_id_or_name_and_customers_by_id_or_number_on_every_route(client, admin_headers):
    user_id = _local(client, admin_headers, "ref.user")
    assert client.get("/api/v1/users/ref.user", headers=admin_headers).json["id"] == user_id
    assert client.get("/api/v1/users/REF.USER", headers=admin_headers).json["id"] == user_id  # the identity key
    assert client.patch("/api/v1/users/ref.user", json={"display_name": "By Name"},
                        headers=admin_headers).json["display_name"] == "By Name"
    missing = client.get("/api/v1/users/nobody.here", headers=admin_headers)
    assert missing.status_code == 404 and "by id or userName" in missing.json["error"]["message"]

    customer = client.post("/api/v1/customers", json={"number": "5150", "name": "Refs"}, headers=admin_headers).json
    assert client.get(f"/api/v1/customers/{customer['id']}", headers=admin_headers).json["number"] == "5150"
    external = client.post("/api/v1/users", json={"user_name": "ref.extern", "email": "x@example.org",
                                                  "kind": "external", "customer_id": "5150"}, headers=admin_headers)
    assert external.status_code == 201 and external.json["customer_id"] == customer["id"]  # by number
    unknown = client.patch(f"/api/v1/users/{user_id}", json={"customer_id": "9999"}, headers=admin_headers)
    assert unknown.status_code == 400 and unknown.json["error"]["field"] == "customer_id"


def test_customers_are_searched_and_filtered_in_the_api_and_the_cli(client, admin_headers, tmp_path):
    for number, name, short, agency, remote in (("1001", "Druckhaus Nord", "DHN", False, True),
                                                ("1002", "Agentur Süd", "AGS", True, True),
                                                ("2001", "Print_Shop 100%", None, True, False)):
        made = client.post("/api/v1/customers", json={"number": number, "name": name, "short_name": short,
                                                      "agency": agency, "remote_access": remote},
                           headers=admin_headers)
        assert made.status_code == 201, made.json

    def numbers(**query: str) -> list[str]:
        page = client.get("/api/v1/customers", query_string=query, headers=admin_headers).json
        return [c["number"] for c in page["items"]]

    assert numbers(q="druck") == ["1001"] and numbers(q="dhn") == ["1001"] and numbers(q="100") == ["1001", "1002",
                                                                                                    "2001"]
    assert numbers(q="%") == ["2001"] and numbers(q="_") == ["2001"]  # literal, not wildcards
    assert numbers(agency="true") == ["1002", "2001"] and numbers(agency="false") == ["1001"]
    assert numbers(agency="true", remote_access="true") == ["1002"]
    page = client.get("/api/v1/customers?limit=1&offset=1", headers=admin_headers).json
    assert page["total"] == 3 and [c["number"] for c in page["items"]] == ["1002"]


def test_dirbridge_customer_list(tmp_path):
    import json

    from bridge.config import load_config_data
    from bridge.runtime import build_runtime
    from bridge.services import Actor

    config = tmp_path / "dirbridge.toml"
    config.write_text('data_dir = "data"\n')
    rt = build_runtime(load_config_data({"data_dir": str(tmp_path / "data")}))
    with rt.services.unit(Actor(name="test")) as uow:
        uow.customers.create(number="3001", name="Agentur West", agency=True)
        uow.customers.create(number="3002", name="Kunde Ost")
    rt.store.dispose()
    listed = run_cli("customer", "list", "--agency", "--config", str(config), cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.splitlines()[0].split()[:2] == ["NUMBER", "NAME"]
    assert "3001" in listed.stdout and "3002" not in listed.stdout
    found = json.loads(run_cli("customer", "list", "--search", "ost", "--output", "json", "--config", str(config),
                               cwd=tmp_path).stdout)
    assert found["total"] == 1 and found["items"][0]["number"] == "3002"


def test_names_that_would_turn_one_user_into_another_are_refused(client, admin_headers, runtime):
    """A userName that is another user's id (routes take either, the id first); a bulk
    search of nothing but white space (it would select everyone); an allow-list past 1000."""
    victim = _local(client, admin_headers, "victim.user")
    scim = Scim(client, create_token(runtime, "entra", "scim"))
    planted = scim.post("/Users", {"schemas": [CORE], "userName": victim})
    assert planted.status_code == 409, planted.json
    assert client.get(f"/api/v1/users/{victim}", headers=admin_headers).json["user_name"] == "victim.user"
    for q in (" ", "\u200b", "\u00a0 "):
        refused = client.post("/api/v1/users/bulk/deactivate", json={"q": q}, headers=admin_headers)
        assert refused.status_code == 400 and refused.json["error"]["field"] == "q"
    many = client.patch(f"/api/v1/users/{victim}", json={"ip_allowlist": [f"10.0.{i // 250}.{i % 250}"
                                                                           for i in range(1001)]},
                        headers=admin_headers)
    assert many.status_code == 400 and "more than 1000" in many.json["error"]["message"]
