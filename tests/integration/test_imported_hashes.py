"""Passwords kept from another system by their hash (a migration "with the password
unchanged"): hashes made by the real tools (OpenLDAP's slappasswd, 389-DS's pwdhash,
bcrypt, argon2 with other costs, Django's PBKDF2 form), imported through the admin API and
the CSV import, checked at login and replaced with argon2id by the first good one."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess

import bcrypt
import pytest
from argon2 import PasswordHasher

from bridge.store.models import User
from tests.fixtures.accounts import accounts_config, attempt

PASSWORD = "Migrated-Pass-42"


@pytest.fixture
def config():  # type: ignore[no-untyped-def]
    return accounts_config()


def _tool(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        raise AssertionError(f"{argv[0]} is missing: the test setup installs it (slapd, 389-ds-base)")
    return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]


def _django(password: str) -> str:
    salt, iterations = "someSaltValue42", 10_000
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(digest).decode()}"


HASHES = {
    "ssha": lambda: _tool("slappasswd", "-h", "{SSHA}", "-s", PASSWORD),
    "ssha512": lambda: _tool("slappasswd", "-o", "module-load=pw-sha2.la", "-h", "{SSHA512}", "-s", PASSWORD),
    "pbkdf2-sha256": lambda: _tool("pwdhash", "-s", "PBKDF2_SHA256", PASSWORD),  # 389-DS's default
    "bcrypt": lambda: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode(),
    "argon2id": lambda: PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD),
    "pbkdf2-sha256 (django)": lambda: _django(PASSWORD),
}


@pytest.mark.parametrize("scheme", list(HASHES))
def test_an_imported_hash_logs_in_once_and_is_replaced_by_argon2id(client, runtime, admin_headers, scheme):
    made = client.post("/api/v1/users", json={"user_name": "moved.user", "email": "moved@example.org"},
                       headers=admin_headers)
    assert made.status_code == 201
    kept = client.put("/api/v1/users/moved.user/password-hash", json={"password_hash": HASHES[scheme]()},
                      headers=admin_headers)
    assert kept.status_code == 200 and kept.json["scheme"] == scheme.split(" ")[0], kept.json
    assert attempt(client, admin_headers, "moved.user", "Not-The-Password-1").status_code == 401
    assert attempt(client, admin_headers, "moved.user", PASSWORD).status_code == 200
    with runtime.store.read() as session:
        stored = session.get(User, made.json["id"]).password_hash
    policy = runtime.config.policy.password
    assert stored.startswith("$argon2id$") and f"m={policy.hash_memory_kib}," in stored  # the configured cost
    assert attempt(client, admin_headers, "moved.user", PASSWORD).status_code == 200  # and it still works
    audit = client.get("/api/v1/audit?user=moved.user&action=user.password*", headers=admin_headers).json
    assert {e["action"] for e in audit["items"]} >= {"user.password", "user.password-rehash"}
    assert all("password_hash" not in e["changes"] or "redacted" in str(e["changes"]["password_hash"])
               for e in audit["items"])


@pytest.mark.parametrize("bad", ["plaintext-password", "{SSHA}not-base64!", "$2b$04$short",
                                 "pbkdf2_sha256$999999999999$salt$aGFzaGhhc2hoYXNoaGFzaA==",
                                 "{MD5}X03MO1qnZdYdgyfeuILPmQ==",
                                 "$2b$31$" + "a" * 53,  # 2^31 rounds: a login that never ends
                                 "$2b$04$" + "a" * 21 + "!" + "a" * 31,  # a character bcrypt refuses
                                 "pbkdf2_sha256$0$salt$aGFzaGhhc2hoYXNoaGFzaA==",  # no iterations
                                 "pbkdf2_sha1$1000000$salt$" + "A" * 988,  # 741 bytes: 38 blocks of a million
                                 "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHQ$" + "a" * 43])  # 4 GiB per login
def test_a_hash_dirbridge_cannot_check_is_refused(client, admin_headers, bad):
    client.post("/api/v1/users", json={"user_name": "moved.bad", "email": "bad@example.org"}, headers=admin_headers)
    refused = client.put("/api/v1/users/moved.bad/password-hash", json={"password_hash": bad}, headers=admin_headers)
    assert refused.status_code == 400 and refused.json["error"]["field"] == "password_hash"


def test_only_the_owner_sets_it_and_never_for_a_directory_user(client, runtime, admin_headers):
    from bridge.services import Actor

    with runtime.services.unit(Actor.scim_client("entra")) as uow:
        uow.users.create(user_name="idp.user@example.com", email="idp@example.com")
    with runtime.services.unit(Actor.ldap_sync("corp")) as uow:
        uow.users.create(user_name="dir.user", source_id="e1", ldap_dn="uid=dir.user,dc=x")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    idp = client.put("/api/v1/users/idp.user@example.com/password-hash", json={"password_hash": hashed},
                     headers=admin_headers)
    assert idp.status_code == 409 and idp.json["error"]["code"] == "sourceConflict"
    directory = client.put("/api/v1/users/dir.user/password-hash", json={"password_hash": hashed},
                           headers=admin_headers)
    assert directory.status_code == 409 and "directory checks the password" in directory.json["error"]["message"]


def test_the_csv_import_keeps_hashes(client, runtime, admin_headers):
    from bridge.accounts.csv_import import import_users
    from bridge.services import Actor

    ssha = HASHES["ssha"]()
    report = import_users(runtime.services, Actor(name="cli:test", channel="import"),
                          f"user_name,email,password_hash\ncsv.moved,csv@example.org,{ssha}\n")
    assert not report.problems, report.problems
    assert attempt(client, admin_headers, "csv.moved", PASSWORD).status_code == 200
    bad = import_users(runtime.services, Actor(name="cli:test", channel="import"),
                       "user_name,email,password_hash\ncsv.other,o@example.org,plaintext\n")
    assert not bad.applied and "password_hash" in (bad.rows[0].error or "")
