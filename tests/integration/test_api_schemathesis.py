"""schemathesis against the app's own /api/v1/openapi.json, on SQLite and PostgreSQL.

The engine is the one behind ``schemathesis run`` (examples, coverage and fuzzing
phases, positive and negative data), talking WSGI to the app, with an admin token.
It must find nothing: no 5xx, no status code, content type, header or body the
document does not declare. Nothing is excluded: login attempts lock client
addresses as the fuzzer goes, but every lockout answer (423) is declared too.

``DIRBRIDGE_SCHEMATHESIS_EXAMPLES`` (default 8) sets the examples per operation,
``DIRBRIDGE_SCHEMATHESIS_SEED`` the seed and ``DIRBRIDGE_SCHEMATHESIS_STATEFUL=1``
adds the stateful phase, for deeper runs by hand; docs/api.md shows the same run
with the CLI against a running daemon.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from schemathesis.engine import events, from_schema

from bridge.runtime import build_runtime
from bridge.services import Actor
from bridge.store import Store
from bridge.web import create_app
from tests.fixtures.app import create_token, make_config
from tests.fixtures.slapd import SlapdServer, source_settings

CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance"]
EXAMPLES = int(os.environ.get("DIRBRIDGE_SCHEMATHESIS_EXAMPLES", "8"))
SEED = int(os.environ.get("DIRBRIDGE_SCHEMATHESIS_SEED", "20240607"))
STATEFUL = os.environ.get("DIRBRIDGE_SCHEMATHESIS_STATEFUL", "") == "1"  # slower: chains of linked calls


@dataclass
class Findings:
    operations: set[str] = field(default_factory=set)
    statuses: dict[str, set[int]] = field(default_factory=dict)
    cases: int = 0
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def seeded_app(store: Store, tmp_path: Path, slapd: SlapdServer, smtp: Any = None):
    """An app whose lists are not empty: an LDAP source (the seeded slapd) with a sync run, a
    customer with its rights-group, roles, a grant, users, tokens and a job run; mail goes to
    ``smtp`` (the SMTP sink) when given, as an invitation or an e-mail change sends some."""
    # The fuzzer learns names from answers and runs what it finds (syncs of corp, jobs): no
    # scheduled LDAP jobs, so that "run a job" stays quick.
    source = source_settings(slapd)
    mail = {"smtp": {"host": smtp.host, "port": smtp.port, "tls": "none"}} if smtp is not None else {}
    config = make_config(ldap={"sources": [source]}, **mail,
                         roles=[{"name": "basic_user", "rights": ["orders.read"]}],
                         scopes={"nodes": [{"id": "company_group:north"}]})
    rt = build_runtime(config.model_copy(update={"data_dir": tmp_path}), store=store)
    app = create_app(rt)
    headers = {"Authorization": f"Bearer {create_token(rt, 'fuzzer', 'admin')}"}
    client = app.test_client()
    customer = client.post("/api/v1/customers", json={"number": "12345", "name": "Heidelberg",
                                                      "remote_access": True}, headers=headers).json
    client.post("/api/v1/users", json={"user_name": "anna.extern", "email": "anna@example.org",
                                       "kind": "external", "customer_id": customer["id"]}, headers=headers)
    client.post("/api/v1/users", json={"user_name": "admin.user", "email": "admin@example.org",
                                       "access_type": "admin"}, headers=headers)
    client.post("/api/v1/grants", json={"role": "basic_user", "group_id": customer["rights_group"]["id"]},
                headers=headers)
    with rt.services.unit(Actor(name="fixture")) as uow:
        uow.tokens.create("entra", "scim")
        uow.tokens.revoke("entra")
    assert client.post("/api/v1/jobs/audit-retention/run", headers=headers).status_code == 200
    assert client.post("/api/v1/sync/sources/corp/runs?wait=60", headers=headers).json["status"] == "ok"
    return app, headers


def run_schemathesis(app, headers: dict[str, str], only_path: str | None = None) -> Findings:
    config = schemathesis.Config.from_dict({
        "seed": SEED,
        "headers": headers,
        "workers": 1,
        "generation": {"max-examples": EXAMPLES, "database": "none"},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
                   "stateful": {"enabled": STATEFUL}},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    })
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=config)
    if only_path is not None:
        schema = schema.include(path=only_path)
    found = Findings()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            found.operations.add(event.recorder.label)
            found.cases += len(event.recorder.cases)
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    found.statuses.setdefault(event.recorder.label, set()).add(interaction.response.status_code)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status.value == "failure":
                        case = event.recorder.cases[case_id].value
                        title = check.failure_info.failure.title if check.failure_info else ""
                        found.failures.append(f"{event.recorder.label}: {check.name}: {title}: "
                                              f"{case.method} {case.formatted_path} query={case.query} "
                                              f"body={str(case.body)[:200]}")
        elif isinstance(event, events.NonFatalError):
            found.errors.append(f"{event.label}: {str(event.value).splitlines()[0][:300]}")
        elif isinstance(event, events.FatalError):
            found.errors.append(f"fatal: {event.exception}")
    return found


def test_schemathesis_finds_nothing(store, slapd, tmp_path, record_property, smtp_sink):
    app, headers = seeded_app(store, tmp_path, slapd, smtp_sink)
    found = run_schemathesis(app, headers)
    record_property("schemathesis", {"operations": len(found.operations), "cases": found.cases})
    print(f"schemathesis: {len(found.operations)} operations/scenarios, {found.cases} cases")
    documented = {f"{method.upper()} {path}" for path, methods in app.api_doc["paths"].items() for method in methods}
    assert documented <= found.operations, documented - found.operations  # every operation was exercised
    assert found.cases > len(documented) * 5
    # The admin token held to the end (a token cannot revoke itself): no operation saw only 401s.
    only_401 = sorted(op for op in documented if found.statuses.get(op, {401}) == {401})
    assert not only_401, only_401
    assert app.test_client().get("/api/v1/tokens", headers=headers).status_code == 200
    assert not found.errors, "\n".join(sorted(set(found.errors)))
    assert not found.failures, "\n".join(sorted(set(found.failures))[:50])


def test_schemathesis_would_see_a_broken_route(sqlite_url, slapd, tmp_path, monkeypatch):
    """The harness itself: a route that answers outside its schema is reported."""
    from bridge.store import migrate

    store = Store(sqlite_url)
    migrate.upgrade(store.engine)
    monkeypatch.setattr("bridge.web.api.jobs.job_run_json", lambda run: {"id": "not a number"})
    app, headers = seeded_app(store, tmp_path, slapd)
    found = run_schemathesis(app, headers, only_path="/api/v1/job-runs")
    store.dispose()
    assert any("response_schema_conformance" in f for f in found.failures), found.failures


def test_schemathesis_would_see_a_missing_header(sqlite_url, slapd, tmp_path):
    """The harness itself: an answer without a header the document declares required is reported
    (here the no-store of a new token, stripped on the way out)."""
    from bridge.store import migrate

    store = Store(sqlite_url)
    migrate.upgrade(store.engine)
    app, headers = seeded_app(store, tmp_path, slapd)
    inner = app.wsgi_app

    def strip_cache_control(environ, start_response):  # type: ignore[no-untyped-def]
        def start(status, response_headers, exc_info=None):  # type: ignore[no-untyped-def]
            kept = [(k, v) for k, v in response_headers if k.lower() != "cache-control"]
            return start_response(status, kept, exc_info)
        return inner(environ, start)

    app.wsgi_app = strip_cache_control  # type: ignore[method-assign]
    found = run_schemathesis(app, headers, only_path="/api/v1/tokens")
    store.dispose()
    missing = [f for f in found.failures if "response_headers_conformance: Missing required" in f
               and "POST /api/v1/tokens" in f]
    assert missing, found.failures


def test_the_document_declares_the_headers_the_code_sends(client):
    """Every answer: X-Request-Id; every 401: WWW-Authenticate; the 202 of a run started: Location;
    an answer holding a token: Cache-Control no-store (bridge.web.api.headers)."""
    doc = client.get("/api/v1/openapi.json").json
    responses = {(f"{method.upper()} {path}", status): response for path, methods in doc["paths"].items()
                 for method, operation in methods.items() for status, response in operation["responses"].items()}
    assert all("X-Request-Id" in r["headers"] for r in responses.values())
    assert all("WWW-Authenticate" in r["headers"] for (_, status), r in responses.items() if status == "401")
    for operation in ("POST /api/v1/sync/sources/{name}/runs", "POST /api/v1/jobs/{name}/run"):
        assert responses[operation, "202"]["headers"]["Location"]["required"] is False
    for operation, status in (("POST /api/v1/tokens", "201"), ("POST /api/v1/tokens/{name}/rotate", "200")):
        assert responses[operation, status]["headers"]["Cache-Control"]["schema"]["const"] == "no-store"
    assert set(doc["components"]["headers"]) == {"X-Request-Id", "WWW-Authenticate", "Allow"}
    # and the code sends them: a refused request carries both of its declared headers
    refused = client.get("/api/v1/users", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == 'Bearer realm="dirbridge-api"'
    assert refused.headers["X-Request-Id"]
