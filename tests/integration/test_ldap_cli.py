"""``dirbridge sync`` as an operator runs it: plan, summary, guard, approval, exit codes."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select

from bridge.store import Store
from bridge.store.models import SyncRun, User
from tests.fixtures.app import run_cli
from tests.fixtures.net import free_port


def config_file(tmp_path: Path, tree, guard: str = "max_percent = 100\nmax_count = 1000", extra: str = "") -> Path:
    path = tmp_path / "dirbridge.toml"
    path.write_text(f"""
data_dir = "data"
[server]
listen = "127.0.0.1:{free_port()}"
[[ldap.sources]]
name = "corp"
url = "{tree.server.url}"
bind_dn = "{tree.server.admin_dn}"
bind_password_env = "CORP_LDAP_PASSWORD"
users_base = "{tree.users_base}"
groups_base = "{tree.groups_base}"
tls = {{ mode = "none" }}
{extra}
[ldap.sources.deletion_guard]
{guard}
""")
    return path


def store_of(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'data' / 'dirbridge.sqlite3'}")


def test_dry_run_then_sync_then_guard_and_approval(tmp_path, ldap_tree):
    tree = ldap_tree
    dns = [tree.add_user(f"cli{i}") for i in range(4)]
    tree.add_group("clique", dns[:2])
    config = str(config_file(tmp_path, tree, guard="max_percent = 30\nmax_count = 10"))
    env = {"CORP_LDAP_PASSWORD": tree.server.admin_password}

    dry = run_cli("sync", "corp", "--dry-run", "--config", config, cwd=tmp_path, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "+ user cli0" in dry.stdout and "+ group clique" in dry.stdout
    assert "corp: full sync (dry run) ok: 4 added" in dry.stdout
    assert tree.server.admin_password not in dry.stdout + dry.stderr
    store = store_of(tmp_path)
    with store.read() as session:
        assert session.scalars(select(User)).all() == []

    real = run_cli("sync", "corp", "--config", config, cwd=tmp_path, env=env)
    assert real.returncode == 0, real.stderr
    assert "corp: full sync ok: 4 added, 0 updated, 0 deactivated, 0 unchanged, 0 errors" in real.stdout
    again = run_cli("sync", "--config", config, cwd=tmp_path, env=env)  # every source; incremental now
    assert again.returncode == 0 and "corp: incremental sync ok" in again.stdout

    tree.delete(dns[0])
    tree.delete(dns[1])
    guarded = run_cli("sync", "corp", "--full", "--config", config, cwd=tmp_path, env=env)
    assert guarded.returncode == 1
    assert "deletion guard" in guarded.stderr and "would remove cli0" in guarded.stderr
    assert "dirbridge sync corp --approve-deletions" in guarded.stderr
    approved = run_cli("sync", "corp", "--approve-deletions", "--config", config, cwd=tmp_path, env=env)
    assert approved.returncode == 0, approved.stderr
    assert "full sync approved: 0 added, 0 updated, 2 deactivated" in approved.stdout
    nothing = run_cli("sync", "corp", "--approve-deletions", "--config", config, cwd=tmp_path, env=env)
    assert nothing.returncode == 2 and "waiting for approval" in nothing.stderr
    with store.read() as session:
        statuses = list(session.scalars(select(SyncRun.status).order_by(SyncRun.id)))
        assert statuses == ["ok", "ok", "ok", "guarded", "approved"]
    store.dispose()

    listed = run_cli("jobs", "--config", config, cwd=tmp_path, env=env)
    assert "ldap-full:corp" in listed.stdout and "ldap-incremental:corp" in listed.stdout


def test_unknown_source_is_bad_usage_and_a_dead_directory_a_failure(tmp_path, ldap_tree):
    config = config_file(tmp_path, ldap_tree)
    env = {"CORP_LDAP_PASSWORD": ldap_tree.server.admin_password}
    unknown = run_cli("sync", "nope", "--config", str(config), cwd=tmp_path, env=env)
    assert unknown.returncode == 2 and "no LDAP source named 'nope'" in unknown.stderr
    config.write_text(config.read_text().replace(ldap_tree.server.url, f"ldap://127.0.0.1:{free_port()}"))
    dead = run_cli("sync", "corp", "--config", str(config), cwd=tmp_path, env=env)
    assert dead.returncode == 1 and "sync of corp failed" in dead.stderr


def test_sync_progress_on_a_terminal_then_a_table_and_exit_1_for_a_refused_entry(tmp_path, ldap_tree):
    """In a real pseudo-terminal: the live line counts users with a rate, a full sync after
    the first shows the bar against the users the last one read and the time left; the
    line is finished before the summary; one refused entry makes the exit code 1."""
    from tests.fixtures.terminal import Terminal

    tree = ldap_tree
    tree.server.ldapadd("".join(
        f"dn: uid=tty{i:04d},{tree.users_base}\nobjectClass: inetOrgPerson\nuid: tty{i:04d}\ncn: tty {i}\n"
        f"sn: tty\nmail: tty{i:04d}@example.org\n\n" for i in range(1500)))
    for g in range(3):  # phases besides the users (groups, memberships) get lines of their own
        tree.add_group(f"ttyteam{g}", [f"uid=tty{i:04d},{tree.users_base}" for i in range(g * 10, g * 10 + 10)])
    config = config_file(tmp_path, tree, extra="page_size = 50\nwrite_batch = 50")
    env = {"CORP_LDAP_PASSWORD": tree.server.admin_password}

    first = Terminal(["sync", "corp", "--full", "--config", str(config)], cwd=tmp_path, env=env)
    first.expect(r"corp: users\s+[\d,]+\s+[\d,]+/s")  # a count and a rate, no total yet
    first.expect(r"\ncorp: full sync ok: 1500 added")  # the progress line ended before it
    assert first.wait() == 0
    assert re.search(r"users\s+.*1500", first.text) and "memberships" in first.text  # the table

    second = Terminal(["sync", "corp", "--full", "--config", str(config)], cwd=tmp_path, env=env)
    second.expect(r"[\d,]+/1,500")  # measured against what the last full sync read
    second.expect(r"left")
    second.expect(r"corp: full sync ok: 0 added, 0 updated, 0 deactivated, 1500 unchanged")
    assert second.wait() == 0

    local = run_cli("user", "create", "tty.taken", "--email", "t@example.org", "--config", str(config), cwd=tmp_path,
                    env=env)
    assert local.returncode == 0, local.stderr
    tree.add_user("tty.taken")  # a name a local user holds: the store refuses this entry
    refused = run_cli("sync", "corp", "--full", "--config", str(config), cwd=tmp_path, env=env)
    assert refused.returncode == 1 and "error: user uid=tty.taken" in refused.stderr
    assert "\x1b[" not in refused.stdout + refused.stderr  # no terminal: no escape codes
