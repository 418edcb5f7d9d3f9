"""Config loading: strict validation, errors that name the key, secrets from outside the file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_origin

import pytest
from pydantic import BaseModel

from bridge.config import Config, ConfigError, load_config, load_config_data

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "dirbridge.example.toml"


def problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_data(raw)
    return info.value.problems


def test_no_config_is_the_embedded_default():
    config = load_config(None)
    assert config.server.listen == "127.0.0.1:8080"
    assert config.database_url.startswith("sqlite:///") and config.database_url.endswith(
        "dirbridge-data/dirbridge.sqlite3")


@pytest.mark.parametrize("raw, expected", [
    ({"server": {"bogus": 1}}, "server.bogus: unknown key"),
    ({"nonsense": {}}, "nonsense: unknown key"),
    ({"server": {"listen": "8080"}}, "server.listen: '8080' is not HOST:PORT"),
    ({"server": {"workers": 0}}, "server.workers: Input should be greater than or equal to 1"),
    ({"policy": {"password": {"min_length": 6}}},
     "policy.password.min_length: Input should be greater than or equal to 8"),
    ({"policy": {"password": {"history": 21}}}, "policy.password.history: Input should be less than or equal to 20"),
    ({"policy": {"password": {"require_upper": False, "require_digit": False}}},
     "policy.password: at least 3 of require_upper/lower/digit/special must be enabled"),
    ({"ldap": {"sources": [{"name": "corp", "url": "ldap://dc1", "users_base": "dc=x", "tls": {"mode": "ldaps"}}]}},
     "ldap.sources[0]: tls.mode is 'ldaps'"),
    ({"ldap": {"sources": [{"name": "corp", "url": "http://dc1", "users_base": "dc=x"}]}},
     "ldap.sources[0].url: 'http://dc1' is not an ldap:// or ldaps:// URL"),
    ({"ldap": {"sources": [{"name": "corp", "url": "ldaps://dc1", "users_base": "dc=x",
                            "schedule": {"full": "every day"}}]}},
     "ldap.sources[0].schedule.full: 'every day' is neither an interval"),
    ({"ldap": {"sources": [{"name": "corp", "url": "ldaps://dc1", "users_base": "dc=x", "tlss": {}}]}},
     "ldap.sources[0].tlss: unknown key"),
    ({"roles": [{"name": "a", "includes": ["b"]}]}, "roles: role 'a' includes unknown roles: b"),
    ({"scopes": {"nodes": [{"id": "pool:p1", "parent": "company_group:nope"}]}},
     "scopes: node 'pool:p1': parent 'company_group:nope' is not declared before it"),
    ({"customers": {"rights_group_name": "X{city}"}}, "customers.rights_group_name: must be a prefix"),
    ({"status": {"session_secret": "changeme"}}, "status.session_secret: too weak"),
    ({"status": {"session_secret": "a" * 64}}, "status.session_secret: too weak"),
    ({"scim": {"clients": {"entra": {"customers": ["1001", " "]}}}},
     "scim.clients.entra.customers: a customer number is empty"),
    ({"ownership": {"rules": [{"source": "entra", "may_take_over": ["ldap:corp"]}]}},
     "ownership.rules[0].source: 'entra' is no source"),
    ({"ownership": {"rules": [{"source": "scim:entra", "may_take_over": ["ldap:crop"]}]}},
     "ownership.rules[0]: 'ldap:crop' is no [[ldap.sources]] entry"),
    ({"mapping": {"rules": [{"group": "G", "group_regex": "^G", "role": "r"}]}},
     "mapping.rules[0]: a rule needs exactly one of group, group_regex, attribute or all_users = true"),
    ({"mapping": {"rules": [{"group_regex": "(", "role": "r"}]}},
     "mapping.rules[0].group_regex: not a valid regular expression"),
])
def test_errors_name_the_key_and_the_problem(raw, expected):
    found = problems(raw)
    assert any(p.startswith(expected) for p in found), found


def test_all_problems_are_reported_at_once():
    found = problems({"server": {"listen": "x", "extra": 1}, "smtp": {"port": 0}})
    assert len(found) == 3


def test_secret_from_a_file(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret-from-file\n")
    config = load_config_data({"smtp": {"password_file": str(secret)}})
    assert config.smtp.password.get_secret_value() == "s3cret-from-file"
    assert "s3cret" not in repr(config)


def test_secret_from_the_environment(monkeypatch):
    monkeypatch.setenv("DB_URL_FOR_TEST", "postgresql+psycopg://u:pw@db/x")
    config = load_config_data({"database": {"url_env": "DB_URL_FOR_TEST"}})
    assert config.database_url == "postgresql+psycopg://u:pw@db/x"
    assert not config.database.should_auto_migrate(config.data_dir)


def test_secret_from_a_systemd_credential(tmp_path, monkeypatch):
    (tmp_path / "ldap-corp").write_text("bind-secret")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = load_config_data({"ldap": {"sources": [{
        "name": "corp", "url": "ldaps://dc1", "users_base": "dc=x", "bind_dn": "cn=svc",
        "bind_password_credential": "ldap-corp"}]}})
    assert config.ldap.sources[0].bind_password.get_secret_value() == "bind-secret"
    assert "bind-secret" in config.secret_values()


@pytest.mark.parametrize("raw, expected", [
    ({"smtp": {"password_file": "/nonexistent/pw"}}, "smtp.password_file: cannot read /nonexistent/pw"),
    ({"smtp": {"password_env": "DIRBRIDGE_TEST_UNSET"}},
     "smtp.password_env: environment variable DIRBRIDGE_TEST_UNSET is not set"),
    ({"smtp": {"password": "a", "password_file": "/x"}}, "smtp.password: set only one of password, password_file"),
    ({"status": {"session_secret_credential": "s"}}, "status.session_secret_credential: $CREDENTIALS_DIRECTORY"),
    ({"ldap": {"sources": [{"name": "a", "url": "ldaps://h", "users_base": "dc=x", "bind_password_env": "NOPE_X"}]}},
     "ldap.sources[0].bind_password_env: environment variable NOPE_X is not set"),
])
def test_secret_errors_name_the_key(raw, expected, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert any(p.startswith(expected) for p in problems(raw))


def test_not_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nlisten=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_the_example_config_is_valid(monkeypatch, tmp_path):
    """The documented example loads, once its secrets are provided."""
    monkeypatch.setenv("DIRBRIDGE_DATABASE_URL", "postgresql+psycopg://dirbridge@db.example.org/dirbridge")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    import secrets

    for credential in ("session-secret", "totp-key"):
        (tmp_path / credential).write_text(secrets.token_hex(32))
    text = EXAMPLE.read_text()
    for path in re.findall(r'_file = "([^"]+)"', text):
        real = tmp_path / Path(path).name
        real.write_text("secret")
        text = text.replace(path, str(real))
    copy = tmp_path / "dirbridge.toml"
    copy.write_text(text)
    config = load_config(copy)
    assert config.ldap.sources[0].preset == "active_directory"
    assert config.data_dir == tmp_path / "dirbridge-data"


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                keys |= _keys(candidate, f"{prefix}{name}.")
    return keys


def test_the_example_documents_every_key():
    text = EXAMPLE.read_text()
    missing = []
    for dotted in sorted(_keys(Config)):
        leaf = dotted.rsplit(".", 1)[-1]
        if not re.search(rf"^\s*(\[+(\w+\.)*{leaf}(\.\w+)*\]+|{leaf}(_file|_env|_credential)?\s*=)", text, re.M):
            missing.append(dotted)
    assert missing == []


@pytest.mark.parametrize(("tables", "slots"), [
    ({}, 1),  # SQLite: a request waits only for the CPU
    ({"database": {"url": "postgresql+psycopg://dirbridge@db/dirbridge"}}, 2),  # each statement waits for the database
    ({"server": {"hot_path_threads": 0}}, 0),  # no gate
    ({"database": {"url": "postgresql+psycopg://dirbridge@db/dirbridge"}, "server": {"hot_path_threads": 1}}, 1),
    ({"server": {"hot_path_threads": 3}}, 3),
    ({"database": {"url": "postgresql+psycopg://dirbridge@db/dirbridge"}, "server": {"hot_path_threads": "auto"}}, 2),
])
def test_hot_path_gates_default_by_store_and_follow_the_key(tables, slots):
    assert load_config_data(tables).hot_path_slots == slots


@pytest.mark.parametrize("value", [-1, 257, "two", "AUTO", 1.5, True, "2"])  # a bool or a quoted number too
def test_a_wrong_hot_path_thread_count_names_the_key(value):
    with pytest.raises(ConfigError, match="server.hot_path_threads"):
        load_config_data({"server": {"hot_path_threads": value}})


def _typed_keys(model: type[BaseModel], kind: type, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The keys of ``kind`` (int or bool, optional or not) in the tables under ``model``."""
    found: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if get_origin(annotation) in (list, dict, tuple):  # a list or map of tables: not one table's key
            continue
        candidates = (annotation, *getattr(annotation, "__args__", ()))
        if annotation is kind or (kind in candidates and str not in candidates and bool not in candidates) \
                or (kind is bool and bool in candidates and int not in candidates):
            found.append((*prefix, name))
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found += _typed_keys(candidate, kind, (*prefix, name))
    return found


def _nested(path: tuple[str, ...], value: object) -> dict:
    raw: dict = {path[-1]: value}
    for name in reversed(path[:-1]):
        raw = {name: raw}
    return raw


INT_KEYS = _typed_keys(Config, int)
BOOL_KEYS = _typed_keys(Config, bool)


def test_the_typed_keys_are_found():
    assert ("server", "workers") in INT_KEYS and ("policy", "password", "min_length") in INT_KEYS
    assert ("scim", "strict") in BOOL_KEYS and ("policy", "password", "require_upper") in BOOL_KEYS
    assert len(INT_KEYS) > 30 and len(BOOL_KEYS) > 10


@pytest.mark.parametrize("path", INT_KEYS, ids=".".join)
@pytest.mark.parametrize("value", [True, "8", 8.0])
def test_an_integer_key_takes_an_integer_only(path, value):
    """A bool or a quoted number is a mistake in the file (``workers = "8"``, ``port = true``),
    refused naming the key instead of read as 1 or 8."""
    assert any(".".join(path) in problem for problem in problems(_nested(path, value))), path


@pytest.mark.parametrize("path", BOOL_KEYS, ids=".".join)
@pytest.mark.parametrize("value", [1, "true", "yes"])
def test_a_boolean_key_takes_true_or_false_only(path, value):
    assert any(".".join(path) in problem for problem in problems(_nested(path, value))), path


def test_a_scim_clients_switches_are_booleans_too():
    refused = problems({"scim": {"clients": {"entra": {"passwords": 1}}}})
    assert any("scim.clients.entra.passwords" in problem for problem in refused), refused
    assert load_config_data({"scim": {"clients": {"entra": {"passwords": True}}}}).scim.client("entra").passwords


def test_a_nul_anywhere_in_the_file_names_its_key(tmp_path):
    """TOML writes NUL as \\u0000; no store keeps it in text, so a role's description or a
    rule's value with one is refused when the file is read, naming the key (not at the write)."""
    path = tmp_path / "dirbridge.toml"
    path.write_text('[[roles]]\nname = "r"\ndescription = "a\\u0000b"\n\n'
                    '[[ldap.sources]]\nname = "corp"\nurl = "ldap://x\\u0000"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert refused.value.problems == ["roles[0].description: contains a NUL character",
                                      "ldap.sources[0].url: contains a NUL character"]


def _bounded_above(model: type[BaseModel], path: tuple[str, ...]) -> bool:
    field = model.model_fields[path[0]]
    if len(path) > 1:
        nested = next(a for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
                      if isinstance(a, type) and issubclass(a, BaseModel))
        return _bounded_above(nested, path[1:])
    return any(getattr(m, "le", None) is not None or getattr(m, "lt", None) is not None for m in field.metadata)


@pytest.mark.parametrize("path", INT_KEYS, ids=".".join)
def test_every_integer_key_has_an_upper_bound_and_a_huge_value_names_it(path):
    """A number past what the code can use (a retention of 10^20 days) would fail every job and
    login that computes a date from it (OverflowError): refused when the file is read."""
    assert _bounded_above(Config, path), path
    assert any(".".join(path) in problem for problem in problems(_nested(path, 10**20))), path
