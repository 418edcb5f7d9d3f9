"""Headers on every answer (bridge.web.headers): nosniff everywhere, SCIM and errors
included; HSTS exactly when the public URL is https."""

from __future__ import annotations

import pytest

from tests.fixtures.app import make_config

PATHS = ["/healthz", "/readyz", "/scim/v2/Users", "/scim/v2/ServiceProviderConfig", "/api/v1/users",
         "/api/v1/no-such-thing", "/status/login", "/invite?token=x", "/metrics"]


@pytest.fixture
def config(request):
    return make_config(server={"public_url": getattr(request, "param", "https://portal.example.org")})


@pytest.mark.parametrize("path", PATHS)
def test_every_answer_says_nosniff_and_hsts_behind_https(client, path):
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff", (path, response.status_code)
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


@pytest.mark.parametrize("config", ["http://intranet.example.org:8080"], indirect=True)
def test_no_hsts_behind_a_plain_http_public_url(client):
    response = client.get("/scim/v2/Users")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" not in response.headers
