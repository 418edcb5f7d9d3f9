"""CSV import (all rows or none, with per-row errors) and the bulk admin verbs."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bridge.accounts.csv_import import import_users
from bridge.services import Actor
from bridge.store.models import Grant, User
from tests.fixtures.accounts import accounts_config
from tests.fixtures.app import run_cli

ROLES = [{"name": "basic_user", "rights": ["orders.read"]}, {"name": "fleet_manager", "rights": ["users.manage"]}]
SCOPES = {"nodes": [{"id": "pool:north-1"}]}
IMPORTER = Actor(name="cli:test", channel="import")

GOOD = """user_name,email,display_name,access_type,roles,ip_allowlist,active
anna.import,anna@example.org,Anna,backend,basic_user@instance;fleet_manager@pool:north-1,10.0.0.0/8,
ben.import,ben@example.org,Ben,admin,,,yes
"""


@pytest.fixture
def config():
    return accounts_config(roles=ROLES, scopes=SCOPES)


def users(runtime) -> dict[str, User]:
    with runtime.store.read() as session:
        return {u.user_name: u for u in session.scalars(select(User))}


def test_good_rows_create_and_update_users_with_roles(runtime):
    report = import_users(runtime.services, IMPORTER, GOOD)
    assert report.ok and report.applied, report
    assert [(r.line, r.action) for r in report.rows] == [(2, "create"), (3, "create")]
    found = users(runtime)
    assert found["anna.import"].ip_allowlist == ["10.0.0.0/8"] and found["ben.import"].access_type == "admin"
    with runtime.services.unit(IMPORTER) as uow:
        roles = sorted((role, g.scope_id, g.origin) for g, role in uow.grants.find(user_id=found["anna.import"].id))
    assert roles == [("basic_user", "instance", "import"), ("fleet_manager", "pool:north-1", "import")]

    again = import_users(runtime.services, IMPORTER, GOOD.replace("Anna,", "Anna B.,")
                         .replace(";fleet_manager@pool:north-1", ""))
    assert [r.action for r in again.rows] == ["update", "unchanged"]
    with runtime.services.unit(IMPORTER) as uow:
        assert [role for _, role in uow.grants.find(user_id=found["anna.import"].id)] == ["basic_user"]
    assert users(runtime)["anna.import"].display_name == "Anna B."


def test_one_bad_row_applies_nothing_and_every_error_is_named(runtime):
    text = ("user_name;email;roles;customer;active;ip_allowlist\n"
            "carl.import;carl@example.org;basic_user@instance;;;\n"
            "abc;short@example.org;;;;\n"                      # userName too short
            "dina.import;;;;;\n"                               # local users need an e-mail
            "erik.import;erik@example.org;nope@instance;;;\n"  # unknown role
            "fay.import;fay@example.org;;99999;;\n"            # unknown customer
            "gus.import;gus@example.org;;;maybe;\n"            # not a boolean
            "hal.import;hal@example.org;;;;10.0.0.300\n"       # not a network
            "CARL.import;carl2@example.org;;;;\n")             # twice (case-insensitively)
    report = import_users(runtime.services, IMPORTER, text)
    assert not report.applied
    errors = {r.line: r.error for r in report.errors}
    assert sorted(errors) == [3, 4, 5, 6, 7, 8, 9]
    assert "shorter than 5" in errors[3] and "e-mail" in errors[4] and "nope" in errors[5]
    assert "99999" in errors[6] and "maybe" in errors[7] and "10.0.0.300" in errors[8] and "line 2" in errors[9]
    assert users(runtime) == {}  # carl.import, the good row, was not applied either
    with runtime.store.read() as session:
        assert session.scalar(select(func.count()).select_from(Grant)) == 0


def test_a_dry_run_reports_and_changes_nothing(runtime):
    report = import_users(runtime.services, IMPORTER, GOOD, dry_run=True)
    assert report.ok and not report.applied and report.count("create") == 2
    assert users(runtime) == {}


def test_unknown_columns_are_refused_before_any_row(runtime):
    report = import_users(runtime.services, IMPORTER, "user_name,e_mail\nx.y.z,x@example.org\n")
    assert report.problems and "unknown columns: e_mail" in report.problems[0] and not report.rows


def test_the_cli_import(tmp_path):
    config = tmp_path / "dirbridge.toml"
    config.write_text('data_dir = "data"\n[[roles]]\nname = "basic_user"\nrights = ["orders.read"]\n'
                      '[[roles]]\nname = "fleet_manager"\nrights = ["users.manage"]\n'
                      '[[scopes.nodes]]\nid = "pool:north-1"\n')
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("\ufeff" + GOOD, encoding="utf-8")
    bad.write_text(GOOD + "x,,,,,,\n", encoding="utf-8")
    args = ("--config", str(config))
    dry = run_cli("import", str(good), "--dry-run", *args, cwd=tmp_path)
    assert dry.returncode == 0 and "dry run, nothing changed: 2 created" in dry.stdout
    failed = run_cli("import", str(bad), *args, cwd=tmp_path)
    assert failed.returncode == 1 and f"{bad}:4: x:" in failed.stderr and "nothing was imported" in failed.stderr
    done = run_cli("import", str(good), *args, cwd=tmp_path)
    assert done.returncode == 0 and "imported: 2 created" in done.stdout
    listed = run_cli("user", "list", *args, cwd=tmp_path)
    assert "anna.import" in listed.stdout and "ben.import" in listed.stdout


def test_bulk_roles_and_deactivation_are_all_or_nothing(runtime, client, admin_headers):
    import_users(runtime.services, IMPORTER, GOOD)
    found = users(runtime)
    granted = client.post("/api/v1/users/bulk/roles", headers=admin_headers,
                          json={"users": [found["anna.import"].id, "ben.import"], "roles": ["fleet_manager@instance"]})
    assert granted.status_code == 200 and granted.json == {"changed": 2, "unchanged": 0}
    unknown = client.post("/api/v1/users/bulk/roles", headers=admin_headers,
                          json={"users": ["anna.import", "nobody.x"], "roles": ["basic_user@pool:north-1"]})
    assert unknown.status_code == 404 and "nobody.x" in unknown.json["error"]["message"]
    with runtime.services.unit(IMPORTER) as uow:
        assert not uow.grants.find(user_id=found["anna.import"].id, role="basic_user", scope="pool:north-1")
    last_admin = client.post("/api/v1/users/bulk/deactivate", headers=admin_headers,
                             json={"users": ["anna.import", "ben.import"]})
    assert last_admin.status_code == 409 and last_admin.json["error"]["code"] == "lastAdmin"
    assert all(u.active for u in users(runtime).values())  # anna stays active too
    done = client.post("/api/v1/users/bulk/deactivate", headers=admin_headers, json={"users": ["anna.import"]})
    assert done.json == {"changed": 1, "unchanged": 0}
    assert not users(runtime)["anna.import"].active


def test_bulk_revoke_delete_and_selections(runtime, client, admin_headers, monkeypatch):
    """Revoke takes the users' own grants (a group's stay), a selection is the holders of a
    role or a search, delete needs confirm, and a selection past the bound is refused."""
    from bridge.services import bulk

    def call(path: str, body: dict, query: str = ""):  # type: ignore[no-untyped-def]
        return client.post(f"/api/v1/users/bulk/{path}{query}", headers=admin_headers, json=body)

    for name in ("sel.one", "sel.two", "sel.three"):
        assert client.post("/api/v1/users", json={"user_name": name, "email": f"{name}@example.org"},
                           headers=admin_headers).status_code == 201
    assert call("roles", {"q": "sel.", "roles": ["basic_user@instance"]}).json == {"changed": 3, "unchanged": 0}
    with runtime.services.unit(IMPORTER) as uow:
        group = uow.groups.create("Selected Readers")
        uow.groups.change_members(group, add_users=[uow.users.by_ref("sel.three").id])
        uow.grants.grant("basic_user", "instance", group_id=group.id)

    revoked = call("roles/revoke", {"users": ["sel.one", "SEL.ONE", "sel.three"], "roles": ["basic_user"]})
    assert revoked.json == {"changed": 2, "unchanged": 0}  # one user named twice counts once
    holders = client.get("/api/v1/users?role=basic_user", headers=admin_headers).json
    assert {u["user_name"] for u in holders["items"]} >= {"sel.two", "sel.three"}  # sel.three by the group
    assert "sel.one" not in {u["user_name"] for u in holders["items"]}
    again = call("roles/revoke", {"users": ["sel.one"], "roles": ["basic_user"]})
    assert again.json == {"changed": 0, "unchanged": 1}
    unknown_role = call("roles/revoke", {"users": ["sel.one"], "roles": ["no_such_role"]})
    assert unknown_role.status_code == 404

    both = call("deactivate", {"users": ["sel.one"], "q": "sel."})
    assert both.status_code == 422 and "exactly one of users, role or q" in both.json["error"]["message"]
    holding = client.get("/api/v1/users?role=basic_user", headers=admin_headers).json["total"]
    by_role = call("deactivate", {"role": "basic_user"})
    assert by_role.json == {"changed": holding, "unchanged": 0} and holding >= 2
    assert client.get("/api/v1/users/sel.three", headers=admin_headers).json["active"] is False
    monkeypatch.setattr(bulk, "MAX_USERS", 2)
    too_many = call("deactivate", {"q": "sel."})
    assert too_many.status_code == 400 and "more than 2" in too_many.json["error"]["message"]
    monkeypatch.setattr(bulk, "MAX_USERS", 10_000)

    unconfirmed = call("delete", {"q": "sel."})
    assert unconfirmed.status_code == 400 and unconfirmed.json["error"]["field"] == "confirm"
    deleted = call("delete", {"users": ["sel.one", "sel.two"]}, "?confirm=true")
    assert deleted.json == {"changed": 2, "unchanged": 0}
    assert client.get("/api/v1/users/sel.one", headers=admin_headers).status_code == 404
    assert client.get("/api/v1/users/sel.three", headers=admin_headers).status_code == 200
