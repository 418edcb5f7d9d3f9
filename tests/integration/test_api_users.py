"""/api/v1/users through the real app, on SQLite and PostgreSQL: auth, rules, errors, paging."""

from __future__ import annotations

import pytest


def create(client, headers, **fields):
    body = {"user_name": "alice.smith", "email": "alice@example.org", **fields}
    return client.post("/api/v1/users", json=body, headers=headers)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic eDp5"}])
def test_the_api_wants_an_admin_token(client, headers):
    response = client.get("/api/v1/users", headers=headers)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_scim_token_cannot_call_the_admin_api(client, scim_headers):
    assert client.get("/api/v1/users", headers=scim_headers).status_code == 401


def test_create_read_change_and_audit(client, admin_headers, runtime):
    created = create(client, admin_headers, display_name="Alice", access_type="admin")
    assert created.status_code == 201
    user = created.json
    assert (user["user_name"], user["source"], user["version"]) == ("alice.smith", "local", 1)
    fetched = client.get(f"/api/v1/users/{user['id']}", headers=admin_headers).json
    assert fetched == user
    changed = client.patch(f"/api/v1/users/{user['id']}", json={"display_name": "Alice S.", "version": 1},
                           headers=admin_headers)
    assert changed.status_code == 200 and changed.json["version"] == 2
    stale = client.patch(f"/api/v1/users/{user['id']}", json={"display_name": "Old", "version": 1},
                         headers=admin_headers)
    assert stale.status_code == 412 and stale.json["error"]["code"] == "versionMismatch"
    from sqlalchemy import select

    from bridge.store.models import AuditEvent
    with runtime.store.read() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert (event.actor, event.channel, event.action) == ("api:portal", "admin-api", "user.update")
    assert event.changes == {"display_name": ["Alice", "Alice S."]}


@pytest.mark.parametrize("fields, status, code, field", [
    ({"user_name": "ab"}, 400, "invalidValue", "user_name"),
    ({"user_name": "has space"}, 400, "invalidValue", "user_name"),
    ({"email": None}, 400, "invalidValue", "email"),
    ({"access_type": "root"}, 422, "invalidValue", "access_type"),
    ({"bogus": True}, 422, "invalidValue", "bogus"),
])
def test_bad_input_gets_a_clear_error(client, admin_headers, fields, status, code, field):
    response = create(client, admin_headers, **fields)
    assert response.status_code == status
    assert response.json["error"]["code"] == code and response.json["error"]["field"] == field


def test_duplicate_user_name_is_409(client, admin_headers):
    create(client, admin_headers)
    response = create(client, admin_headers, user_name="ALICE.SMITH")
    assert response.status_code == 409 and response.json["error"]["code"] == "uniqueness"


def test_last_admin_is_kept_and_delete_needs_confirmation(client, admin_headers):
    admin = create(client, admin_headers, access_type="admin").json
    response = client.post(f"/api/v1/users/{admin['id']}/deactivate", headers=admin_headers)
    assert response.status_code == 409 and response.json["error"]["code"] == "lastAdmin"
    other = create(client, admin_headers, user_name="bob.jones", email="bob@example.org").json
    assert client.delete(f"/api/v1/users/{other['id']}", headers=admin_headers).status_code == 400
    assert client.delete(f"/api/v1/users/{other['id']}?confirm=true", headers=admin_headers).status_code == 204
    assert client.get(f"/api/v1/users/{other['id']}", headers=admin_headers).status_code == 404


def test_search_and_pagination(client, admin_headers):
    for i in range(7):
        create(client, admin_headers, user_name=f"user.number{i}", email=f"u{i}@example.org",
               access_type="api" if i % 3 == 0 else "backend")
    page = client.get("/api/v1/users?q=number&limit=3&offset=3", headers=admin_headers).json
    assert page["total"] == 7 and [u["user_name"] for u in page["items"]] == [
        "user.number3", "user.number4", "user.number5"]
    api_users = client.get("/api/v1/users?access_type=api", headers=admin_headers).json
    assert [u["user_name"] for u in api_users["items"]] == ["user.number0", "user.number3", "user.number6"]


def test_search_words_are_literal_and_match_names_as_the_identity_key_does(client, admin_headers):
    create(client, admin_headers, user_name="Jo.Ann", email="joann@example.org")
    create(client, admin_headers, user_name="jo_smith", email="jo_smith@example.org")
    create(client, admin_headers, user_name="joxsmith", email="joxsmith@example.org")

    def found(q: str) -> list[str]:
        return sorted(u["user_name"] for u in client.get("/api/v1/users", query_string={"q": q},
                                                         headers=admin_headers).json["items"])

    assert found("jo") == ["Jo.Ann", "jo_smith", "joxsmith"]
    assert found("%") == []  # a wildcard is a character to look for, not "everyone"
    assert found("jo_") == ["jo_smith"]  # "_" is not "any one character"
    assert found("\uff2a\uff2f.\u200bANN") == ["Jo.Ann"]  # width, case and invisibles as in the identity key


def test_openapi_document_describes_the_routes(client):
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    assert {"get", "post"} <= set(doc["paths"]["/api/v1/users"])
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
