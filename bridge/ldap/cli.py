"""``dirbridge sync [SOURCE] [--full] [--dry-run] [--approve-deletions]``.

Exit codes: 0 every sync succeeded; 1 a sync failed, was stopped by the deletion
guard or another sync of the source was running; 2 bad usage (unknown source,
nothing to approve).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from bridge.cli_common import EXIT_FAILURE, EXIT_USAGE, build_runtime_or_fail, config_option, fail, load
from bridge.ldap.lock import SyncBusy
from bridge.ldap.plan import SyncResult
from bridge.ldap.sync import NothingToApprove, UnknownSource, find_source, run_sync
from bridge.store.models import RunStatus


class ProgressLine:
    """A one-line progress display on a terminal (stderr); silent otherwise."""

    def __init__(self, source: str, expected: int) -> None:
        self.source = source
        self.expected = expected
        self.done: dict[str, int] = {}
        self.enabled = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, phase: str, n: int) -> None:
        self.done[phase] = self.done.get(phase, 0) + n
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.1:
            return
        self.last = now
        users = self.done.get("users", 0)
        if self.expected:
            width = 30
            filled = min(width, int(width * users / self.expected))
            bar = f"[{'#' * filled}{'.' * (width - filled)}] {users}/{self.expected} users"
        else:
            bar = f"{users} users"
        others = ", ".join(f"{v} {k}" for k, v in self.done.items() if k != "users")
        click.echo(f"\r{self.source}: {bar}{'; ' + others if others else ''}\x1b[K", err=True, nl=False)

    def close(self) -> None:
        if self.enabled and self.last:
            click.echo("\r\x1b[K", err=True, nl=False)


def _expected_users(rt: object, source: str) -> int:
    from sqlalchemy import func, select

    from bridge.store.models import User

    with rt.store.read() as session:  # type: ignore[attr-defined]
        return session.scalar(select(func.count()).select_from(User).where(User.source == f"ldap:{source}")) or 0


def _report(result: SyncResult) -> None:
    if result.plan is not None:
        lines = result.plan.lines()
        click.echo(f"plan for {result.source} ({result.mode} sync, dry run: nothing was changed):")
        for line in lines:
            click.echo(f"  {line}")
        if not lines:
            click.echo("  nothing to do")
    click.echo(result.summary())
    for error in result.errors[:20]:
        click.echo(f"  error: {error}", err=True)
    if len(result.errors) > 20:
        click.echo(f"  ... and {len(result.errors) - 20} more errors (see the sync run record)", err=True)
    if result.status == "failed":
        click.echo(f"dirbridge: sync of {result.source} failed: {result.error}", err=True)
    if result.status == RunStatus.guarded:
        click.echo(f"dirbridge: the deletion guard stopped the removals of {result.source}: {result.guard}", err=True)
        for user in result.would_remove[:20]:
            click.echo(f"  would remove {user['user_name']} ({user['dn']})", err=True)
        if len(result.would_remove) > 20:
            click.echo(f"  ... and {len(result.would_remove) - 20} more", err=True)
        click.echo(f"check the list, then run: dirbridge sync {result.source} --approve-deletions", err=True)


@click.command("sync")
@click.argument("source", required=False)
@click.option("--full", is_flag=True, help="a full sync (reconciliation) instead of the incremental one")
@click.option("--dry-run", is_flag=True, help="print the plan and change nothing")
@click.option("--approve-deletions", is_flag=True,
              help="approve the removals of the run the deletion guard stopped, and apply them")
@config_option
def sync(source: str | None, full: bool, dry_run: bool, approve_deletions: bool, config_path: Path | None) -> None:
    """Run an LDAP sync now (every source, or SOURCE)."""
    rt = build_runtime_or_fail(load(config_path))
    if approve_deletions and source is None:
        fail("--approve-deletions needs the SOURCE whose run you approve", EXIT_USAGE)
    if source is not None:
        try:
            names = [find_source(rt, source).name]
        except UnknownSource as exc:
            fail(str(exc), EXIT_USAGE)
    else:
        names = [s.name for s in rt.config.ldap.sources]
        if not names:
            fail("no LDAP sources are configured ([[ldap.sources]])", EXIT_USAGE)
    ok = True
    for name in names:
        progress = ProgressLine(name, _expected_users(rt, name))
        try:
            result = run_sync(rt, name, full=full, dry_run=dry_run, approve_deletions=approve_deletions,
                              progress=progress)
        except NothingToApprove as exc:
            progress.close()
            fail(str(exc), EXIT_USAGE)
        except SyncBusy as exc:
            progress.close()
            click.echo(f"dirbridge: {exc}", err=True)
            ok = False
            continue
        progress.close()
        _report(result)
        ok = ok and result.status in (RunStatus.ok, RunStatus.approved)
    if not ok:
        sys.exit(EXIT_FAILURE)
