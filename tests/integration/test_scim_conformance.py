"""scim2-tester, an independent SCIM conformance suite, against a real `dirbridge serve`."""

from __future__ import annotations

import subprocess
import sys

from tests.fixtures.app import REPO, run_cli
from tests.fixtures.net import free_port
from tests.integration.test_daemon import start_serve


def test_scim2_tester_finds_no_failure(tmp_path):
    port = free_port()
    # scim2-tester gives accessType random values, "admin" among them, and customerNumber
    # random ones: only a client the config allows makes admins and names customers (else
    # 403), so this one is allowed both.
    server = start_serve(tmp_path, port, extra="[scim.clients.conformance]\nadmins = true\ncustomers = [\"*\"]\n")
    try:
        config = str(tmp_path / "dirbridge.toml")
        # As in any real installation, a local admin exists: scim2-tester gives accessType random
        # values, and demoting the only active admin is refused (the last-admin rule).
        admin = run_cli("user", "create", "admin.one", "--email", "admin@example.org", "--access-type", "admin",
                        "--config", config, cwd=tmp_path)
        assert admin.returncode == 0, admin.stderr
        token = run_cli("token", "create", "conformance", "--config", config, cwd=tmp_path).stdout.strip()
        result = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "scim-conformance"), f"http://127.0.0.1:{port}/scim/v2", token],
            capture_output=True, text=True, timeout=300)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " success" in result.stdout.splitlines()[-1]
    assert "error" not in result.stdout.splitlines()[-1]
