"""What a client meets at a real ``dirbridge serve`` (issue "Logins and the server under
attack"): headers on every answer, a client_ip that is no address refused, SCIM queries
past the bounds refused and its locations from the public URL, a weak session secret
refused at start naming the key. Each was checked through Flask's test client too;
here it is the server as deployed (waitress, the full WSGI stack)."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path

from tests.fixtures.app import run_cli
from tests.fixtures.net import free_port
from tests.integration.test_daemon import start_serve


def _call(port: int, method: str, path: str, body: object | None, headers: dict[str, str]):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_the_deployed_server_holds_the_line(tmp_path: Path):
    port = free_port()
    proc = start_serve(tmp_path, port, 'public_url = "https://portal.example.org"\n')
    try:
        admin = run_cli("token", "create", "portal", "--admin", "--config", "dirbridge.toml", cwd=tmp_path)
        idp = run_cli("token", "create", "idp", "--config", "dirbridge.toml", cwd=tmp_path)
        api = {"Authorization": f"Bearer {admin.stdout.strip()}", "Content-Type": "application/json"}
        scim = {"Authorization": f"Bearer {idp.stdout.strip()}", "Content-Type": "application/scim+json",
                "Host": "evil.example.net"}
        for path, headers in (("/healthz", {}), ("/scim/v2/Users", {}), ("/api/v1/users", {}),
                              ("/scim/v2/Users", scim)):
            status, answer, _ = _call(port, "GET", path, None, headers)
            assert answer.get("X-Content-Type-Options") == "nosniff", (path, status, answer)
            assert answer.get("Strict-Transport-Security") == "max-age=31536000", (path, answer)

        status, _, body = _call(port, "POST", "/api/v1/auth/login",
                                {"username": "x.user", "password": "y", "client_ip": "10.10.10.10 x"}, api)
        assert status == 422 and json.loads(body)["error"]["field"] == "client_ip"

        for query in ("startIndex=99999999999999999999",
                      "filter=" + "%20or%20".join(f"userName%20eq%20%22u{i}%22" for i in range(5700))):
            status, _, body = _call(port, "GET", f"/scim/v2/Users?{query}", None, scim)
            assert status == 400, (query[:40], status, body[:200])

        status, answer, body = _call(port, "POST", "/scim/v2/Users", {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "located.user"}, scim)
        assert status == 201 and answer["Location"].startswith("https://portal.example.org/scim/v2/Users/")
        assert json.loads(body)["meta"]["location"] == answer["Location"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_weak_session_secret_stops_the_start_naming_the_key(tmp_path: Path):
    config = tmp_path / "dirbridge.toml"
    config.write_text(f'data_dir = "data"\n[server]\nlisten = "127.0.0.1:{free_port()}"\n'
                      '[status]\nsession_secret = "changeme"\n')
    exe = Path(sys.executable).parent / "dirbridge"
    result = subprocess.run([str(exe), "serve", "--config", str(config)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "status.session_secret: too weak" in result.stderr and "changeme" not in result.stderr
