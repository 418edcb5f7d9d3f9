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


def test_the_status_page_of_the_deployed_server(tmp_path: Path):
    """A temporary password opens only the form that replaces it, and a revoked operator
    right ends the session for good (giving it back does not revive the old cookie),
    through a real browser-like client (cookies, CSRF) against a real serve."""
    import http.cookiejar
    import urllib.parse
    import urllib.request

    from tests.fixtures.browser import csrf_in

    port = free_port()
    proc = start_serve(tmp_path, port, "[policy.password]\nhash_time_cost = 1\nhash_memory_kib = 8192\n"
                       "hash_parallelism = 1\n[status]\nrequire_totp = false\n")  # TOTP: test_status_page
    base = f"http://127.0.0.1:{port}"
    try:
        admin = run_cli("token", "create", "portal", "--admin", "--config", "dirbridge.toml", cwd=tmp_path)
        api = {"Authorization": f"Bearer {admin.stdout.strip()}", "Content-Type": "application/json"}
        status, _, body = _call(port, "POST", "/api/v1/users", {"user_name": "ops.person", "email": "o@example.org",
                                                                "access_type": "admin"}, api)
        user_id = json.loads(body)["id"]
        _call(port, "POST", "/api/v1/users", {"user_name": "other.admin", "email": "a@example.org",
                                              "access_type": "admin"}, api)  # so that ops.person may be demoted
        _, _, body = _call(port, "POST", f"/api/v1/users/{user_id}/password-reset", {}, api)
        temporary = json.loads(body)["temporary_password"]

        jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                return None

        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)

        def fetch(path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
            data = urllib.parse.urlencode(form).encode() if form is not None else None
            try:
                with browser.open(base + path, data=data, timeout=30) as answer:
                    return answer.status, answer.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()

        def log_in(password: str) -> tuple[int, str]:
            _, page = fetch("/status/login")
            return fetch("/status/login", {"csrf": csrf_in(page), "username": "ops.person", "password": password})

        status, page = log_in(temporary)
        assert status == 200 and 'name="new_password"' in page, page[:300]
        assert fetch("/status")[0] == 303
        chosen = "Ops-Own-Password-77"
        status, page = fetch("/status/password", {"csrf": csrf_in(page), "new_password": chosen,
                                                  "new_password_repeat": chosen})
        assert status == 200 and "changed" in page
        status, _ = log_in(chosen)
        assert status == 303 and fetch("/status")[0] == 200
        cookies = list(jar)

        assert _call(port, "PATCH", f"/api/v1/users/{user_id}", {"access_type": "backend"}, api)[0] == 200
        assert fetch("/status")[0] == 303
        _call(port, "PATCH", f"/api/v1/users/{user_id}", {"access_type": "admin"}, api)  # and comes back
        for cookie in cookies:
            jar.set_cookie(cookie)  # the old session cookie, as a thief would keep it
        assert fetch("/status")[0] == 303
    finally:
        proc.terminate()
        proc.wait(timeout=30)
