"""Property-based fuzzing of the parsers that take hostile input: SCIM filters (and
sortBy/attributes), SCIM PATCH paths and values, and the config loader. The answer
to anything is a 2xx or a 4xx SCIM error (never a 5xx), or a ConfigError."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config import Config, ConfigError, load_config, load_config_data
from tests.reliability.conftest import Report, fuzz_examples
from tests.reliability.harness import new_user, patch


def fuzz(examples: int) -> settings:
    """Hypothesis settings of a fuzz target: no deadline (PostgreSQL, 2 shared cores), no example database."""
    return settings(max_examples=fuzz_examples(examples), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
ATTRIBUTES = [
    "userName", "displayName", "active", "title", "externalId", "id", "name.givenName", "name.familyName",
    "name.formatted", "emails", "emails.value", "emails.type", "emails.primary", "phoneNumbers.value",
    "addresses.locality", "groups", "groups.value", "groups.display", "members", "members.value",
    "meta.created", "meta.lastModified", "meta.resourceType", "meta.version", "preferredLanguage", "timezone",
    "urn:ietf:params:scim:schemas:core:2.0:User:userName",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    "urn:dirbridge:params:scim:schemas:extension:portal:2.0:User:kind",
    "urn:dirbridge:params:scim:schemas:extension:portal:2.0:User:customerNumber",
    "x", "a.b.c", "name", "password", "entitlements.value", "x509Certificates.value",
]
OPERATORS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "EQ", "Co", "pr", "xx"]
HOSTILE = ["'", '"', "\\", "%", "_", "' OR '1'='1", "); DROP TABLE users; --", "\x00", "*", "\u212a", "ß", "İ",
           "2024-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1e999", "-0", "[", "]", "(", ")"]

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
values = st.one_of(
    text.map(json.dumps), st.sampled_from(HOSTILE).map(json.dumps), st.sampled_from(HOSTILE),
    st.integers(-10**20, 10**20).map(str), st.floats(allow_nan=False).map(repr),
    st.sampled_from(["true", "false", "null", "True", "nul"]),
)
attribute = st.one_of(st.sampled_from(ATTRIBUTES), text)


@st.composite
def comparison(draw: Any) -> str:
    op = draw(st.sampled_from(OPERATORS))
    attr = draw(attribute)
    return f"{attr} pr" if op == "pr" else f"{attr} {op} {draw(values)}"


filters = st.recursive(
    comparison(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or", "AND", "Or", "xor"]), inner).map(" ".join),
        inner.map(lambda f: f"not ({f})"), inner.map(lambda f: f"({f})"),
        st.tuples(st.sampled_from(["emails", "groups", "members", "phoneNumbers", "title", "x"]), inner)
        .map(lambda p: f"{p[0]}[{p[1]}]"),
    ),
    max_leaves=6,
) | text


def _scim_error_or_ok(status: int, body: bytes) -> bool:
    if status >= 500:
        return False
    if status >= 400:
        return "urn:ietf:params:scim:api:messages:2.0:Error" in json.loads(body)["schemas"]
    return True


@pytest.fixture
def seeded(client, scim_headers):  # type: ignore[no-untyped-def]
    """A user in a group, so that filters and patches have something to match."""
    headers = {**scim_headers, "Content-Type": "application/scim+json"}
    user = client.post("/scim/v2/Users", headers=headers, data=json.dumps(new_user(
        "fuzz.target", title="t", name={"givenName": "F", "familyName": "Z"},
        phoneNumbers=[{"value": "+49 1", "type": "work"}]))).json
    group = client.post("/scim/v2/Groups", headers=headers, data=json.dumps({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "fuzz group",
        "members": [{"value": user["id"]}]})).json
    return client, headers, user["id"], group["id"]


def test_scim_filters_sorting_and_projection_never_fail_the_server(seeded, report: Report) -> None:
    client, headers, _, _ = seeded
    tried: list[str] = []
    failures: list[tuple[str, int]] = []

    @fuzz(120)
    @given(filters, st.sampled_from(["Users", "Groups"]), st.one_of(st.none(), attribute),
           st.sampled_from([None, "ascending", "descending", "sideways"]), st.one_of(st.none(), attribute))
    def probe(expression: str, endpoint: str, sort_by: str | None, order: str | None, attrs: str | None) -> None:
        query = {"filter": expression, "sortBy": sort_by, "sortOrder": order, "attributes": attrs, "count": 5}
        query = {k: v for k, v in query.items() if v is not None}
        tried.append(expression)
        response = client.get(f"/scim/v2/{endpoint}", headers=headers, query_string=query)
        if not _scim_error_or_ok(response.status_code, response.data):
            failures.append((json.dumps(query), response.status_code))
        body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": expression}
        response = client.post(f"/scim/v2/{endpoint}/.search", headers=headers, data=json.dumps(body))
        if not _scim_error_or_ok(response.status_code, response.data):
            failures.append((f".search {expression!r}", response.status_code))

    probe()
    dialect = client.application.extensions["dirbridge"].store.engine.dialect.name
    report.add("inputs", target=f"SCIM filter/sortBy/attributes ({dialect})",
               tried=len(tried) * 2, failures=len(failures))
    assert not failures, failures[:10]


patch_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), text, st.sampled_from(HOSTILE)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.one_of(attribute, text), inner,
                                                                          max_size=3)),
    max_leaves=8,
)
paths = st.one_of(st.none(), attribute, filters.map(lambda f: f"emails[{f}]"),
                  st.tuples(attribute, filters).map(lambda p: f"{p[0]}[{p[1]}].value"), text)


def test_scim_patch_paths_and_values_never_fail_the_server(seeded, report: Report) -> None:
    client, headers, user_id, group_id = seeded
    tried: list[Any] = []
    failures: list[tuple[str, int]] = []

    @fuzz(120)
    @given(st.lists(st.fixed_dictionaries({"op": st.sampled_from(["add", "replace", "remove", "Replace", "move"]),
                                           "path": paths, "value": patch_values}), min_size=1, max_size=3),
           st.sampled_from(["Users", "Groups"]))
    def probe(operations: list[dict[str, Any]], endpoint: str) -> None:
        operations = [{k: v for k, v in op.items() if v is not None or k == "value"} for op in operations]
        tried.append(operations)
        target = user_id if endpoint == "Users" else group_id
        response = client.patch(f"/scim/v2/{endpoint}/{target}", headers=headers, data=json.dumps(patch(*operations)))
        if not _scim_error_or_ok(response.status_code, response.data):
            failures.append((json.dumps(operations)[:300], response.status_code))

    probe()
    report.add("inputs", target=f"SCIM PATCH ({client.application.extensions['dirbridge'].store.engine.dialect.name})",
               tried=len(tried), failures=len(failures))
    assert not failures, failures[:10]


# -- the config loader --------------------------------------------------------------------

def _schema_keys(model: type, depth: int = 0) -> dict[str, Any]:
    """Table name -> its keys, from the pydantic models (so the fuzzer knows real keys)."""
    from pydantic import BaseModel

    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        annotation = info.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        nested = next((a for a in (annotation, *inner) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        out[name] = _schema_keys(nested, depth + 1) if nested is not None and depth < 4 else None
    return out


KEYS = _schema_keys(Config)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**12), st.floats(allow_nan=True), text,
                    st.sampled_from(["15m", "0s", "* * * * *", "99 99 * * *", "ldap://x", "ldaps://127.0.0.1:1",
                                     "sqlite:///:memory:", "{x}", "(?P<", "-1", "", "instance", "pool:{pool}",
                                     "../../etc/passwd"]))


def config_value(keys: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    if not keys:
        return st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(text, scalars, max_size=2))
    table = st.dictionaries(st.one_of(st.sampled_from(sorted(keys)), text),
                            st.deferred(lambda: scalars), max_size=4)
    typed = st.fixed_dictionaries({}, optional={k: st.deferred(lambda v=v: config_value(v)) for k, v in keys.items()})
    return st.one_of(typed, table, st.lists(typed, max_size=2), scalars)


def test_config_loader_answers_config_errors_only(tmp_path: Path, report: Report) -> None:
    tried = [0]

    @fuzz(300)
    @given(config_value(KEYS))
    def probe(raw: Any) -> None:
        tried[0] += 1
        if not isinstance(raw, dict):
            raw = {"data_dir": raw}
        try:
            assert isinstance(load_config_data(raw, base_dir=tmp_path), Config)
        except ConfigError as exc:
            assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)

    @fuzz(150)
    @given(st.one_of(text, st.lists(st.sampled_from(["[server]", "[[ldap.sources]]", "listen = ", "\"x\"", "=",
                                                     "url_file = \"/nonexistent\"", "[database]", "\n", "1e9",
                                                     "workers = 0", "[[roles]]", "name = \"r\"", "\x00", "'''"]),
                                     max_size=12).map("".join)))
    def probe_text(source: str) -> None:
        tried[0] += 1
        path = tmp_path / "fuzz.toml"
        path.write_text(source, encoding="utf-8", errors="surrogatepass")
        try:
            assert isinstance(load_config(path), Config)
        except ConfigError as exc:
            assert exc.problems

    probe()
    probe_text()
    report.add("inputs", target="config loader", tried=tried[0], failures=0)


def test_config_loader_examples_found_by_the_fuzzer(tmp_path: Path) -> None:
    """Inputs that once escaped as other exceptions than ConfigError."""
    for raw in ({"data_dir": 5}, {"data_dir": None}, {"database": {"url_file": 3}}, {"ldap": "x"}):
        with pytest.raises(ConfigError):
            load_config_data(raw, base_dir=tmp_path)
    assert tomllib  # the text fuzzer above goes through tomllib's own errors
