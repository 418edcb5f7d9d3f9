"""The dirbridge command as an operator runs it: exit codes 0/1/2, tokens, check-config
against the real slapd, migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bridge.services.tokens import authenticate
from bridge.store import Store
from bridge.store.models import TokenKind
from tests.fixtures.app import run_cli
from tests.fixtures.net import free_port


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "dirbridge.toml"
    path.write_text(body)
    return path


def sqlite_config(tmp_path: Path, extra: str = "") -> Path:
    return write_config(tmp_path, f'data_dir = "data"\n[server]\nlisten = "127.0.0.1:{free_port()}"\n{extra}')


def all_text_in_database(url: str) -> str:
    """Every value of every table, as one string, to prove what is (not) stored."""
    from sqlalchemy import inspect

    engine = create_engine(url)
    out = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            out.extend(repr(row) for row in conn.execute(text(f'SELECT * FROM "{table}"')))
    engine.dispose()
    return "\n".join(out)


def test_bad_config_exits_2_and_names_the_key(tmp_path):
    bad = write_config(tmp_path, '[server]\nlisten = "127.0.0.1:8080"\nwokers = 4\n[smtp]\nport = 70000\n')
    result = run_cli("check-config", "--config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "server.wokers: unknown key" in result.stderr
    assert "smtp.port: Input should be less than or equal to 65535" in result.stderr


def test_missing_config_file_exits_2(tmp_path):
    result = run_cli("check-config", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_bad_usage_exits_2(tmp_path):
    assert run_cli("token", "create", cwd=tmp_path).returncode == 2
    assert run_cli("no-such-verb", cwd=tmp_path).returncode == 2


def test_arguments_no_store_can_take_are_usage_errors(tmp_path):
    """Bytes that are not UTF-8 (Python keeps them as lone surrogates, which no driver
    encodes) and an id past 64 bits: exit 2 naming the argument, not a traceback."""
    import os

    config = sqlite_config(tmp_path)
    assert run_cli("token", "create", "entra", "--config", str(config), cwd=tmp_path).returncode == 0
    not_utf8 = os.fsdecode(b"caf\xe9")
    for args in (("user", "create", not_utf8, "--email", "c@example.org"), ("token", "revoke", not_utf8),
                 ("audit", "--user", not_utf8)):
        refused = run_cli(*args, "--config", str(config), cwd=tmp_path)
        assert refused.returncode == 2 and "is not valid UTF-8" in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stderr
    for value in ("99999999999999999999", str(2**63), "0"):
        refused = run_cli("conflicts", "close", value, "--config", str(config), cwd=tmp_path)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, (value, refused.stderr)


def test_check_config_on_the_embedded_default(tmp_path):
    result = run_cli("check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "config: ok (embedded default)" in result.stdout
    assert "database: ok (sqlite" in result.stdout


def test_token_is_printed_once_and_stored_as_a_hash(tmp_path):
    config = sqlite_config(tmp_path)
    created = run_cli("token", "create", "entra", "--config", str(config), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dbr_")
    token = lines[0]
    url = f"sqlite:///{tmp_path / 'data' / 'dirbridge.sqlite3'}"
    stored = all_text_in_database(url)
    assert token not in stored and token.split("_")[2] not in stored
    store = Store(url)
    assert authenticate(store, token, TokenKind.scim).name == "entra"
    assert authenticate(store, token, TokenKind.admin) is None  # a SCIM token cannot call the admin API
    assert authenticate(store, token[:-1] + ("A" if token[-1] != "A" else "B"), TokenKind.scim) is None

    listed = run_cli("token", "list", "--config", str(config), cwd=tmp_path)
    assert "entra" in listed.stdout and token not in listed.stdout

    again = run_cli("token", "create", "entra", "--config", str(config), cwd=tmp_path)
    assert again.returncode == 1 and "exists already" in again.stderr

    rotated = run_cli("token", "rotate", "entra", "--config", str(config), cwd=tmp_path)
    new_token = rotated.stdout.strip()
    assert rotated.returncode == 0 and new_token.startswith("dbr_") and new_token != token
    assert authenticate(store, token, TokenKind.scim) is None  # the old one stops at once
    assert authenticate(store, new_token, TokenKind.scim).name == "entra"  # same name, so same source
    assert new_token not in all_text_in_database(url)

    revoked = run_cli("token", "revoke", "entra", "--config", str(config), cwd=tmp_path)
    assert revoked.returncode == 0
    assert authenticate(store, new_token, TokenKind.scim) is None
    after_revoke = run_cli("token", "rotate", "entra", "--config", str(config), cwd=tmp_path)
    assert after_revoke.returncode == 1 and "is revoked" in after_revoke.stderr
    assert run_cli("token", "revoke", "okta", "--config", str(config), cwd=tmp_path).returncode == 1
    store.dispose()


def test_admin_tokens_are_their_own_kind(tmp_path):
    config = sqlite_config(tmp_path)
    token = run_cli("token", "create", "portal", "--admin", "--config", str(config), cwd=tmp_path).stdout.strip()
    store = Store(f"sqlite:///{tmp_path / 'data' / 'dirbridge.sqlite3'}")
    assert authenticate(store, token, TokenKind.admin).name == "portal"
    assert authenticate(store, token, TokenKind.scim) is None
    store.dispose()


def test_config_from_the_environment_variable(tmp_path):
    config = sqlite_config(tmp_path)
    result = run_cli("token", "create", "okta", cwd=tmp_path, env={"DIRBRIDGE_CONFIG": str(config)})
    assert result.returncode == 0
    assert (tmp_path / "data" / "dirbridge.sqlite3").exists()


def test_postgres_needs_an_explicit_upgrade(tmp_path, postgres_url):
    config = write_config(tmp_path, f'[database]\nurl = "{postgres_url}"\n')
    refused = run_cli("token", "create", "entra", "--config", str(config), cwd=tmp_path)
    assert refused.returncode == 1 and "dirbridge db upgrade" in refused.stderr
    upgraded = run_cli("db", "upgrade", "--config", str(config), cwd=tmp_path)
    assert upgraded.returncode == 0 and "upgraded from nothing to" in upgraded.stdout
    assert "up to date" in run_cli("db", "upgrade", "--config", str(config), cwd=tmp_path).stdout
    assert run_cli("token", "create", "entra", "--config", str(config), cwd=tmp_path).returncode == 0


def ldap_source(slapd, password: str, url: str | None = None) -> str:
    return f"""
[[ldap.sources]]
name = "corp"
url = "{url or slapd.url}"
preset = "openldap"
bind_dn = "{slapd.admin_dn}"
bind_password = "{password}"
users_base = "{slapd.users_base}"
groups_base = "{slapd.groups_base}"
tls = {{ mode = "none" }}
"""


def test_check_config_binds_to_the_real_directory(tmp_path, slapd):
    config = sqlite_config(tmp_path, ldap_source(slapd, slapd.admin_password))
    result = run_cli("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ldap source corp: ok (bound as dn:{slapd.admin_dn})" in result.stdout
    assert 'ldap source corp: WARNING: tls.mode = "none": the bind password crosses the network in clear' \
        in result.stdout


@pytest.mark.parametrize(("tls", "warned"), [("none", True), ("starttls", False), ("implicit", False)])
def test_check_config_warns_of_an_smtp_password_sent_in_clear(tmp_path, tls, warned):
    config = sqlite_config(tmp_path, f'[smtp]\nhost = "mail.example.org"\ntls = "{tls}"\nusername = "dirbridge"\n'
                                     'password = "Smtp-Secret-42"\n')
    result = run_cli("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("smtp: WARNING" in result.stdout) is warned
    assert "Smtp-Secret-42" not in result.stdout + result.stderr


def test_check_config_reports_a_failed_bind_without_the_password(tmp_path, slapd):
    config = sqlite_config(tmp_path, ldap_source(slapd, "Wrong-Secret-42"))
    result = run_cli("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "ldap source corp: FAILED (the directory refused the bind of " in result.stdout
    assert "check bind_dn and bind_password of [[ldap.sources]] corp" in result.stdout
    assert "Wrong-Secret-42" not in result.stdout + result.stderr


def test_check_config_fails_over_to_the_next_url(tmp_path, slapd):
    dead = f"ldap://127.0.0.1:{free_port()}"
    config = sqlite_config(tmp_path, ldap_source(slapd, slapd.admin_password).replace(
        f'url = "{slapd.url}"', f'url = ["{dead}", "{slapd.url}"]'))
    result = run_cli("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout


def test_check_config_reports_an_unreachable_directory(tmp_path, slapd):
    config = sqlite_config(tmp_path, ldap_source(slapd, "x", url=f"ldap://127.0.0.1:{free_port()}"))
    result = run_cli("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "ldap source corp: FAILED" in result.stdout


@pytest.mark.parametrize("command", [("jobs",), ("jobs", "run", "audit-retention")])
def test_jobs_can_be_listed_and_run(tmp_path, command):
    config = sqlite_config(tmp_path)
    result = run_cli(*command, "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "audit-retention" in result.stdout


def test_a_job_run_reads_as_words_and_its_failure_exits_1_without_a_traceback(tmp_path):
    config = str(sqlite_config(tmp_path))
    ran = run_cli("jobs", "run", "audit-retention", "--config", config, cwd=tmp_path)
    assert ran.returncode == 0 and re.fullmatch(
        r"audit-retention: ok in \d+\.\d s \(deleted 0, conflicts purged 0, job runs purged 0, sync runs purged 0\)"
        r"  \[job run \d+\]\n",
        ran.stdout), ran.stdout
    broken = sqlite_config(tmp_path, '[[ldap.sources]]\nname = "corp"\nurl = "ldap://127.0.0.1:1"\n'
                                      'users_base = "dc=x"\ntls = { mode = "none" }\n')
    failed = run_cli("jobs", "run", "ldap-full:corp", "--config", str(broken), cwd=tmp_path)
    assert failed.returncode == 1 and "Traceback" not in failed.stdout + failed.stderr
    assert failed.stdout.startswith("ldap-full:corp: failed in ")
    assert "cannot reach the directory of corp" in failed.stdout


def test_config_may_come_before_the_command(tmp_path):
    config = str(sqlite_config(tmp_path))
    for argv in (("--config", config, "jobs"), ("--config", config, "jobs", "run", "operator-sessions"),
                 ("--config", config, "user", "list")):
        result = run_cli(*argv, cwd=tmp_path)
        assert result.returncode == 0, (argv, result.stderr)
    # the embedded default would make data/ under the working directory: nothing of it here
    assert not (tmp_path / "elsewhere").exists()


def test_running_an_unknown_job_is_bad_usage(tmp_path):
    result = run_cli("jobs", "run", "nope", "--config", str(sqlite_config(tmp_path)), cwd=tmp_path)
    assert result.returncode == 2 and "no job named 'nope'" in result.stderr


def test_user_verbs_go_through_the_service_rules(tmp_path):
    config = str(sqlite_config(tmp_path))
    created = run_cli("user", "create", "root.admin", "--email", "root@example.org", "--access-type", "admin",
                      "--config", config, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    short = run_cli("user", "create", "abc", "--email", "a@example.org", "--config", config, cwd=tmp_path)
    assert short.returncode == 1 and "shorter than 5 characters" in short.stderr
    taken = run_cli("user", "create", "ROOT.admin", "--email", "r@example.org", "--config", config, cwd=tmp_path)
    assert taken.returncode == 1 and "already taken" in taken.stderr
    last = run_cli("user", "deactivate", "root.admin", "--config", config, cwd=tmp_path)
    assert last.returncode == 1 and "last active admin" in last.stderr
    unconfirmed = run_cli("user", "delete", "root.admin", "--config", config, cwd=tmp_path)
    assert unconfirmed.returncode == 2
    listed = run_cli("user", "list", "--access-type", "admin", "--config", config, cwd=tmp_path)
    header, row = listed.stdout.splitlines()[:2]
    assert header.split() == ["USERNAME", "ACCESS", "SOURCE", "STATE", "ID"]
    assert row.split()[:4] == ["root.admin", "admin", "local", "active"]


def test_a_schema_newer_than_the_code_is_a_clear_error(tmp_path):
    config = sqlite_config(tmp_path)
    assert run_cli("token", "create", "entra", "--config", str(config), cwd=tmp_path).returncode == 0
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'dirbridge.sqlite3'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    result = run_cli("token", "list", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "schema (9999_future) is newer than this dirbridge knows" in result.stderr


def test_check_config_searches_what_a_sync_reads(tmp_path, slapd, ldap_tree):
    """Binding is not enough: a users_base one letter off, a base that holds nobody and
    entries without the attributes the preset reads are found before the first sync."""
    good = run_cli("check-config", "--config", str(sqlite_config(tmp_path, ldap_source(slapd, slapd.admin_password))),
                   cwd=tmp_path)
    assert good.returncode == 0, good.stdout
    assert f"ldap source corp: ok (bound as dn:{slapd.admin_dn})" in good.stdout
    assert re.search(r"ldap source corp: ok \(\d+ users under users_base", good.stdout), good.stdout
    assert "groups under groups_base" in good.stdout

    typo = slapd.users_base.replace("ou=", "ou=x", 1)
    bad = run_cli("check-config", "--config", str(sqlite_config(
        tmp_path, ldap_source(slapd, slapd.admin_password).replace(slapd.users_base, typo))), cwd=tmp_path)
    assert bad.returncode == 1
    assert f"ldap source corp: FAILED (users_base {typo!r} does not exist in the directory" in bad.stdout

    ldap_tree.conn.add(f"uid=noname,{ldap_tree.users_base}", ["inetOrgPerson"], {"uid": "noname", "cn": "No Mail",
                                                                                "sn": "x"})
    for base, expected in ((ldap_tree.groups_base, "FAILED (no user under users_base"),
                           (ldap_tree.users_base, "WARNING (1 of the 1 users read have no mail (email)")):
        config = ldap_source(slapd, slapd.admin_password).replace(f'users_base = "{slapd.users_base}"',
                                                                 f'users_base = "{base}"')
        found = run_cli("check-config", "--config", str(sqlite_config(tmp_path, config)), cwd=tmp_path)
        assert f"ldap source corp: {expected}" in found.stdout, found.stdout
        assert found.returncode == (1 if "FAILED" in expected else 0)


def test_config_given_on_the_command_line_wins_over_the_environment(tmp_path):
    """DIRBRIDGE_CONFIG names production; --config, before the command or after it, names
    another: the command line wins, and naming two different files is refused."""
    prod, staging = tmp_path / "prod", tmp_path / "staging"
    for directory in (prod, staging):
        directory.mkdir()
        (directory / "dirbridge.toml").write_text('data_dir = "data"\n')
    env = {"DIRBRIDGE_CONFIG": str(prod / "dirbridge.toml")}
    made = run_cli("--config", str(staging / "dirbridge.toml"), "user", "create", "stage.only", "--email",
                   "s@example.org", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    assert "stage.only" in run_cli("user", "list", "--config", str(staging / "dirbridge.toml"), cwd=tmp_path).stdout
    assert "stage.only" not in run_cli("user", "list", cwd=tmp_path, env=env).stdout  # production untouched
    twice = run_cli("--config", str(staging / "dirbridge.toml"), "user", "list", "--config",
                    str(prod / "dirbridge.toml"), cwd=tmp_path)
    assert twice.returncode == 2 and "--config is given twice" in twice.stderr
