"""The admin API's tokens, jobs, sync runs, rights-groups, user search and error bodies,
through the real app on SQLite and PostgreSQL (sync against a real slapd)."""

from __future__ import annotations

import re
import threading

import pytest
from sqlalchemy import func, select

from bridge.jobs.registry import JobSpec
from bridge.services import Actor
from bridge.store.models import ApiToken, AuditEvent, JobRun, SyncRun
from tests.fixtures.app import create_token
from tests.fixtures.slapd import SEED_PASSWORDS, source_settings

NEW_LISTS = ["/api/v1/tokens", "/api/v1/sync/sources", "/api/v1/sync/runs", "/api/v1/jobs", "/api/v1/job-runs",
             "/api/v1/rights-groups", "/api/v1/rights"]


def is_error_body(body: dict, code: str) -> bool:
    return set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"} \
        and body["error"]["code"] == code and bool(body["error"]["message"])


@pytest.mark.parametrize("path", NEW_LISTS)
def test_no_token_and_a_scim_token_are_refused(client, scim_headers, admin_headers, path):
    for headers in ({}, scim_headers):
        response = client.get(path, headers=headers)
        assert response.status_code == 401 and is_error_body(response.json, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    page = client.get(path, headers=admin_headers)
    assert page.status_code == 200 and set(page.json) == {"total", "offset", "limit", "items"}


def test_a_rotated_scim_token_keeps_its_source_and_the_old_secret_is_refused(client, admin_headers, runtime):
    created = client.post("/api/v1/tokens", json={"name": "entra", "kind": "scim"}, headers=admin_headers).json
    old = {"Authorization": f"Bearer {created['token']}"}
    made = client.post("/scim/v2/Users", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                              "userName": "lena.berg"}, headers=old)
    assert made.status_code == 201

    rotated = client.post("/api/v1/tokens/entra/rotate", headers=admin_headers)
    assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
    assert rotated.json["token"] != created["token"] and rotated.json["prefix"] != created["prefix"]
    assert rotated.json["id"] == created["id"] and rotated.json["last_used_at"] is None
    assert client.get("/scim/v2/Users", headers=old).status_code == 401
    new = {"Authorization": f"Bearer {rotated.json['token']}"}
    # The same client name is the same source: it may still change the user it created.
    patched = client.patch(f"/scim/v2/Users/{made.json['id']}", headers=new, json={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Lena Berg"}]})
    assert patched.status_code in (200, 204), patched.get_data(as_text=True)
    with runtime.store.read() as session:
        events = [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.target_name == "entra"))]
    assert events == ["token.create", "token.rotate"]
    own = client.post("/api/v1/tokens/portal/rotate", headers=admin_headers)
    assert own.status_code == 409 and own.json["error"]["field"] == "name"
    client.post("/api/v1/tokens/entra/revoke", headers=admin_headers)
    assert client.post("/api/v1/tokens/entra/rotate", headers=admin_headers).status_code == 409


def test_tokens_are_shown_once_and_a_revoked_token_is_refused(client, admin_headers, runtime):
    created = client.post("/api/v1/tokens", json={"name": "robot", "kind": "admin"}, headers=admin_headers)
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    token = created.json["token"]
    assert re.fullmatch(r"dbr_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token)
    assert token.split("_")[1] == created.json["prefix"] and created.json["active"] is True
    with runtime.store.read() as session:  # only the hash is stored
        row = session.scalar(select(ApiToken).where(ApiToken.name == "robot"))
        assert row.token_hash != token and token not in row.token_hash

    robot = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/users", headers=robot).status_code == 200
    listed = client.get("/api/v1/tokens?kind=admin", headers=admin_headers)
    assert token not in listed.get_data(as_text=True) and "hash" not in listed.get_data(as_text=True)
    robot_row = next(t for t in listed.json["items"] if t["name"] == "robot")
    assert robot_row["last_used_at"] is not None and "token" not in robot_row

    revoked = client.post("/api/v1/tokens/robot/revoke", headers=admin_headers)
    assert revoked.status_code == 200 and revoked.json["active"] is False and revoked.json["revoked_at"]
    refused = client.get("/api/v1/users", headers=robot)
    assert refused.status_code == 401 and is_error_body(refused.json, "unauthorized")
    assert client.post("/api/v1/tokens/robot/revoke", headers=admin_headers).json["revoked_at"] == \
        revoked.json["revoked_at"]  # revoking twice changes nothing
    again = client.post("/api/v1/tokens", json={"name": "robot", "kind": "admin"}, headers=admin_headers)
    assert again.status_code == 409 and is_error_body(again.json, "conflict")
    inactive = client.get("/api/v1/tokens?active=false", headers=admin_headers).json
    assert [t["name"] for t in inactive["items"]] == ["robot"]
    own = client.post("/api/v1/tokens/portal/revoke", headers=admin_headers)  # the fixture's own token
    assert own.status_code == 409 and own.json["error"]["field"] == "name"
    assert client.get("/api/v1/tokens", headers=admin_headers).status_code == 200
    missing = client.post("/api/v1/tokens/nobody/revoke", headers=admin_headers)
    assert missing.status_code == 404 and is_error_body(missing.json, "notFound")


def test_a_scim_token_made_through_the_api_cannot_call_it(client, admin_headers):
    created = client.post("/api/v1/tokens", json={"name": "okta", "kind": "scim"}, headers=admin_headers)
    assert created.status_code == 201
    response = client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {created.json['token']}"})
    assert response.status_code == 401


def test_pagination_totals_are_the_same_everywhere(client, admin_headers):
    for i in range(5):
        client.post("/api/v1/tokens", json={"name": f"t{i}", "kind": "scim"}, headers=admin_headers)
        client.post("/api/v1/roles", json={"name": f"role{i}"}, headers=admin_headers)
    tokens = client.get("/api/v1/tokens?kind=scim&offset=1&limit=3", headers=admin_headers).json
    assert (tokens["total"], tokens["offset"], tokens["limit"]) == (5, 1, 3)
    assert [t["name"] for t in tokens["items"]] == ["t1", "t2", "t3"]
    roles = client.get("/api/v1/roles?offset=4&limit=3", headers=admin_headers).json
    assert roles["total"] == 5 and [r["name"] for r in roles["items"]] == ["role4"]
    beyond = client.get("/api/v1/tokens?offset=50", headers=admin_headers).json
    assert beyond["total"] == 6 and beyond["items"] == []  # the fixture's admin token and the five
    too_big = client.get("/api/v1/tokens?limit=1001", headers=admin_headers)
    assert too_big.status_code == 422 and too_big.json["error"]["field"] == "limit"


def test_every_error_under_api_v1_is_the_json_error_body(client, admin_headers, runtime):
    unknown = client.get("/api/v1/no/such/route", headers=admin_headers)
    assert unknown.status_code == 404 and is_error_body(unknown.json, "notFound")
    wrong_method = client.put("/api/v1/tokens", json={}, headers=admin_headers)
    assert wrong_method.status_code == 405 and is_error_body(wrong_method.json, "methodNotAllowed")
    assert set(wrong_method.headers["Allow"].split(", ")) >= {"GET", "POST"}
    bad_json = client.post("/api/v1/tokens", data="{nope", content_type="application/json", headers=admin_headers)
    assert bad_json.status_code == 400 and is_error_body(bad_json.json, "invalidJson")
    not_json = client.post("/api/v1/tokens", data="name=x", content_type="text/plain", headers=admin_headers)
    assert not_json.status_code == 415 and is_error_body(not_json.json, "unsupportedMediaType")
    limit = client.application.config["MAX_CONTENT_LENGTH"]
    huge = client.post("/api/v1/tokens", data="[" + " " * limit + "]", content_type="application/json",
                       headers=admin_headers)
    assert huge.status_code == 413 and is_error_body(huge.json, "payloadTooLarge")
    # A null where the schema says a plain value is refused before it reaches the store.
    client.post("/api/v1/customers", json={"number": "1", "name": "One"}, headers=admin_headers)
    null = client.patch("/api/v1/customers/1", json={"remote_access": None}, headers=admin_headers)
    assert null.status_code == 422 and null.json["error"]["field"] == "remote_access"
    # Outside /api/v1 Flask's own pages stay.
    assert client.get("/no-such-page").content_type.startswith("text/html")


def test_running_a_job_now_records_a_job_run(client, admin_headers, runtime):
    jobs = client.get("/api/v1/jobs", headers=admin_headers).json
    names = [j["name"] for j in jobs["items"]]
    assert "audit-retention" in names and jobs["total"] == len(names)
    ran = client.post("/api/v1/jobs/audit-retention/run", headers=admin_headers)
    assert ran.status_code == 200, ran.json
    assert (ran.json["job"], ran.json["outcome"], ran.json["counts"]) == ("audit-retention", "ok", {"deleted": 0,
                                                                                     "conflicts_purged": 0,
                                                                                     "job_runs_purged": 0,
                                                                                     "sync_runs_purged": 0})
    with runtime.store.read() as session:
        row = session.get(JobRun, ran.json["id"])
        assert (row.job, row.outcome, row.replica) == ("audit-retention", "ok", runtime.replica)
    job = client.get("/api/v1/jobs/audit-retention", headers=admin_headers).json
    assert job["last_run"]["id"] == ran.json["id"] and job["next_run_at"] is None  # no scheduler here
    runs = client.get("/api/v1/job-runs?job=audit-retention", headers=admin_headers).json
    assert runs["total"] == 1 and runs["items"][0]["id"] == ran.json["id"]
    unknown = client.post("/api/v1/jobs/no-such-job/run", headers=admin_headers)
    assert unknown.status_code == 404 and unknown.json["error"]["field"] == "name"


def test_a_long_job_answers_202_and_finishes_in_the_background(client, admin_headers, runtime, monkeypatch):
    release = threading.Event()

    def slow(rt):
        assert release.wait(30)
        return {"slept": 1}

    spec = JobSpec("slow-job", "1h", slow, "waits for the test")
    monkeypatch.setattr("bridge.web.api.jobs.find_job", lambda rt, name: spec)
    started = client.post("/api/v1/jobs/slow-job/run?wait=0.2", headers=admin_headers)
    assert started.status_code == 202, started.json
    run = started.json["run"]
    assert run["outcome"] == "running" and started.headers["Location"] == f"/api/v1/job-runs/{run['id']}"
    release.set()
    for _ in range(200):
        finished = client.get(f"/api/v1/job-runs/{run['id']}", headers=admin_headers).json
        if finished["outcome"] != "running":
            break
        threading.Event().wait(0.05)
    assert (finished["outcome"], finished["counts"]) == ("ok", {"slept": 1})


def test_rights_groups_list_their_customer_roles_and_members(client, admin_headers):
    def call(method, path, body=None):
        return getattr(client, method)(path, json=body, headers=admin_headers)

    customer = call("post", "/api/v1/customers", {"number": "12345", "name": "Heidelberg", "remote_access": True}).json
    call("post", "/api/v1/customers", {"number": "777", "name": "Closed"})  # no remote access: no group
    user = call("post", "/api/v1/users", {"user_name": "anna.extern", "email": "anna@example.org",
                                          "kind": "external", "customer_id": customer["id"]}).json
    call("post", "/api/v1/roles", {"name": "remote", "rights": ["orders.read"]})
    grant = call("post", "/api/v1/grants", {"role": "remote", "group_id": customer["rights_group"]["id"]}).json
    groups = call("get", "/api/v1/rights-groups").json
    assert groups["total"] == 1
    group = groups["items"][0]
    assert (group["id"], group["name"], group["customer"], group["members"]) == (
        customer["rights_group"]["id"], "X12345-Heidelberg", "12345", 1)
    assert group["roles"] == [{"grant_id": grant["id"], "role": "remote", "scope": "instance"}]
    assert call("get", "/api/v1/rights-groups?customer=777").json["total"] == 0
    members = call("get", f"/api/v1/rights-groups/{group['id']}/members").json
    assert members["total"] == 1 and members["items"][0]["user_id"] == user["id"]
    assert members["items"][0]["origins"] == [f"customer:{customer['id']}"]
    assert call("get", "/api/v1/rights-groups/nope").status_code == 404


def test_users_are_searched_by_prefix_kind_customer_and_role(client, admin_headers, runtime):
    def call(method, path, body=None):
        return getattr(client, method)(path, json=body, headers=admin_headers)

    customer = call("post", "/api/v1/customers", {"number": "42", "name": "Acme", "remote_access": True}).json
    ids = {}
    for name, kind in (("anna.a", "internal"), ("anton.b", "internal"), ("bert_c", "internal"),
                       ("berta.x", "external")):
        body = {"user_name": name, "email": f"{name}@example.org", "kind": kind}
        if kind == "external":
            body["customer_id"] = customer["id"]
        ids[name] = call("post", "/api/v1/users", body).json["id"]

    def names(query: str) -> list[str]:
        page = call("get", f"/api/v1/users?{query}").json
        assert page["total"] == len(page["items"])
        return [u["user_name"] for u in page["items"]]

    assert names("user_name=AN") == ["anna.a", "anton.b"]
    assert names("user_name=bert_") == ["bert_c"]  # _ is a character, not a wildcard
    assert names("kind=external") == ["berta.x"] == names("customer=42")
    call("post", "/api/v1/roles", {"name": "auditor", "rights": ["audit.read"]})
    assert names("role=auditor") == []
    call("post", "/api/v1/grants", {"role": "auditor", "user": "anna.a"})
    with runtime.services.unit(Actor(name="test")) as uow:  # a group holding the role, and one inside it
        outer = uow.groups.create("Auditors")
        inner = uow.groups.create("Junior auditors")
        uow.groups.set_members(outer, [ids["anton.b"]], [inner.id])
        uow.groups.set_members(inner, [ids["bert_c"]])
        outer_id = outer.id
    call("post", "/api/v1/grants", {"role": "auditor", "group_id": outer_id})
    assert names("role=auditor") == ["anna.a", "anton.b", "bert_c"]
    assert names("role=auditor&user_name=b") == ["bert_c"]
    assert names("role=no-such-role") == []


def test_a_sync_started_through_the_api_shows_in_the_runs(store, slapd, tmp_path):
    from bridge.runtime import build_runtime
    from bridge.web import create_app
    from tests.fixtures.app import make_config

    config = make_config(ldap={"sources": [source_settings(slapd)]}).model_copy(update={"data_dir": tmp_path})
    rt = build_runtime(config, store=store)
    client = create_app(rt).test_client()
    headers = {"Authorization": f"Bearer {create_token(rt, 'portal', 'admin')}"}

    started = client.post("/api/v1/sync/sources/corp/runs?full=true&wait=60", headers=headers)
    assert started.status_code == 200, started.json
    run = started.json
    assert (run["source"], run["mode"], run["status"], run["added"]) == ("corp", "full", "ok", len(SEED_PASSWORDS))
    assert run["counts"]["groups_added"] == 5 and run["waiting_approval"] is False
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(SyncRun)) == 1
    runs = client.get("/api/v1/sync/runs?source=corp&status=ok", headers=headers).json
    assert runs["total"] == 1 and runs["items"][0]["id"] == run["id"]
    assert client.get("/api/v1/sync/runs?status=failed", headers=headers).json["total"] == 0
    assert client.get(f"/api/v1/sync/runs/{run['id']}", headers=headers).json == run
    source = client.get("/api/v1/sync/sources/corp", headers=headers).json
    assert source["last_run"]["id"] == run["id"] and source["waiting_approval"] is None
    assert "bind_password" not in source and slapd.admin_password not in str(source)
    assert client.get("/api/v1/sync/sources/other", headers=headers).status_code == 404
    nothing = client.post("/api/v1/sync/sources/corp/runs?approve_deletions=true", headers=headers)
    assert nothing.status_code == 409 and is_error_body(nothing.json, "nothingToApprove")
    # Found by schemathesis: a password no LDAP bind can carry (control characters) is a wrong
    # password (401), not an unreachable directory (503).
    login = client.post("/api/v1/auth/login", json={"username": "frank", "password": "\x8a\x12JI"}, headers=headers)
    assert login.status_code == 401 and is_error_body(login.json, "invalidCredentials")


def test_a_guarded_run_shows_its_plan_and_is_approved_through_the_api(sqlite_url, ldap_tree, tmp_path):
    from bridge.runtime import build_runtime
    from bridge.store import Store, migrate
    from bridge.web import create_app
    from tests.fixtures.app import make_config

    store = Store(sqlite_url)
    migrate.upgrade(store.engine)
    tree = ldap_tree
    dns = [tree.add_user(f"g{i:02d}") for i in range(10)]
    settings = source_settings(tree.server, tree, deletion_guard={"max_percent": 20, "max_count": 5,
                                                                  "min_entries": 1})
    rt = build_runtime(make_config(ldap={"sources": [settings]}).model_copy(update={"data_dir": tmp_path}),
                       store=store)
    client = create_app(rt).test_client()
    headers = {"Authorization": f"Bearer {create_token(rt, 'portal', 'admin')}"}
    assert client.post("/api/v1/sync/sources/corp/runs", headers=headers).json["status"] == "ok"
    for dn in dns[:4]:
        tree.delete(dn)

    guarded = client.post("/api/v1/sync/sources/corp/runs?full=true", headers=headers).json
    assert guarded["status"] == "guarded" and "max_percent" in guarded["guard"]
    assert guarded["waiting_approval"] is True
    assert sorted(u["user_name"] for u in guarded["would_deactivate"]) == ["g00", "g01", "g02", "g03"]
    assert client.get("/api/v1/sync/sources/corp", headers=headers).json["waiting_approval"] == guarded["id"]

    approved = client.post("/api/v1/sync/sources/corp/runs?approve_deletions=true", headers=headers).json
    assert (approved["status"], approved["deactivated"], approved["approves_run"]) == ("approved", 4, guarded["id"])
    assert sorted(u["user_name"] for u in approved["removed"]["users"]) == ["g00", "g01", "g02", "g03"]
    before = client.get(f"/api/v1/sync/runs/{guarded['id']}", headers=headers).json
    assert before["approved_by"] == approved["id"] and before["waiting_approval"] is False
    assert client.get("/api/v1/sync/runs?status=guarded", headers=headers).json["total"] == 1
    store.dispose()


def test_audit_retention_purges_conflicts_resolved_long_ago_and_keeps_open_ones(client, admin_headers, runtime):
    from datetime import timedelta

    from sqlalchemy import select

    from bridge.clock import utcnow
    from bridge.store.models import SourceConflict

    long_ago = utcnow() - timedelta(days=runtime.config.audit.retention_days + 1)
    with runtime.store.write() as session:
        for subject, resolved in (("old.resolved", long_ago), ("old.open", None)):
            session.add(SourceConflict(kind="user_name", source="scim:idp2", subject=subject, subject_key=subject,
                                       holder="local", detail="-", count=1, first_seen=long_ago,
                                       last_seen=long_ago, resolved_at=resolved))
    ran = client.post("/api/v1/jobs/audit-retention/run", headers=admin_headers)
    assert ran.json["counts"]["conflicts_purged"] == 1
    with runtime.store.read() as session:
        assert session.scalars(select(SourceConflict.subject)).all() == ["old.open"]
