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
