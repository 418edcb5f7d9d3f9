"""The first operator, from the terminal only: a local user, a temporary password, the
operator right, TOTP enrolled by scanning what the terminal shows; then the status page
takes the password and the code (no admin API, no curl, no code computed by hand)."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlparse

import pyotp

from bridge.config import load_config_data
from bridge.runtime import build_runtime
from bridge.store import Store
from bridge.web import create_app
from tests.fixtures.app import run_cli
from tests.fixtures.browser import login_form
from tests.fixtures.terminal import Terminal


def test_the_first_operator_is_made_from_the_cli(tmp_path):
    (tmp_path / "dirbridge.toml").write_text('data_dir = "data"\n')
    args = ("--config", "dirbridge.toml")
    assert run_cli("user", "create", "ops.first", "--email", "ops@example.org", *args, cwd=tmp_path).returncode == 0

    added = run_cli("operator", "add", "ops.first", *args, cwd=tmp_path)
    assert added.returncode == 0 and "ops.first is now an operator" in added.stdout
    assert "dirbridge user reset-password ops.first" in added.stdout
    assert "dirbridge user totp enrol ops.first" in added.stdout
    temporary = run_cli("user", "reset-password", "ops.first", *args, cwd=tmp_path).stdout.strip()

    term = Terminal(["user", "totp", "enrol", "ops.first", *args], cwd=tmp_path)
    uri = term.expect(r"otpauth://totp/\S+").group(0)
    assert "\u2580" in term.output or "\u2584" in term.output or "\u2588" in term.output  # a QR code, drawn
    term.expect(r"the app's code: ")
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    term.send(pyotp.TOTP(secret).now() + "\n")
    term.expect(r"confirmed\. Recovery codes")
    assert term.wait() == 0
    recovery = re.findall(r"^[0-9A-Z]{4}(?:-[0-9A-Z]{4}){3}\r?$", term.output, re.M)
    assert len(recovery) >= 8, term.output

    ready = run_cli("operator", "add", "ops.first", *args, cwd=tmp_path)
    assert "already was an operator" in ready.stdout and "ready: log in at /status/login" in ready.stdout

    config = load_config_data({"data_dir": str(tmp_path / "data")})
    rt = build_runtime(config, store=Store(config.database_url))
    client = create_app(rt).test_client()
    # the next step's code: the enrolment used this one, and a code counts once
    page = login_form(client, "ops.first", temporary, pyotp.TOTP(secret).at(time.time() + 30))
    assert page.status_code == 200 and "temporary" in page.get_data(as_text=True)  # in: the change form first
    rt.store.dispose()

    reset = run_cli("user", "totp", "reset", "ops.first", *args, cwd=tmp_path)
    assert reset.returncode == 0 and "TOTP of ops.first removed" in reset.stdout
    piped = run_cli("user", "totp", "enrol", "ops.first", *args, cwd=tmp_path)  # no terminal: no prompt
    assert piped.returncode == 0 and piped.stdout.startswith("otpauth://totp/")
    assert "dirbridge user totp confirm ops.first CODE" in piped.stderr
