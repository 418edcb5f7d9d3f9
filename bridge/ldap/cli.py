"""``dirbridge sync [SOURCE] [--full] [--dry-run] [--approve-deletions]``.

On a terminal a live progress line per source (rich): entries read so far, the rate,
and, for a full sync, the bar and the time left against the number of users the last
full sync read; refreshed several times a second and finished before anything else is
printed. Then a summary table, the errors, and for a dry run the planned changes (the
first 50; ``--all`` for every one, ``--output json`` for a machine).

Exit codes: 0 every sync succeeded and every entry was written; 1 a sync failed, was
stopped by the deletion guard, another sync of the source was running, or an entry was
refused; 2 bad usage (unknown source, nothing to approve).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from bridge.cli_common import EXIT_FAILURE, EXIT_USAGE, build_runtime_or_fail, config_option, fail, load
from bridge.ldap.lock import SyncBusy
from bridge.ldap.plan import SyncResult
from bridge.ldap.sync import NothingToApprove, UnknownSource, find_source, run_sync
from bridge.services.runs import SUCCEEDED
from bridge.store.models import RunStatus

#: planned changes a dry run prints without --all
PLAN_LINES = 50
ERROR_LINES = 20


class RateColumn(ProgressColumn):
    """Entries per second, as rich measures them."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f}/s" if task.speed else "", style="progress.data.speed")


class CountColumn(ProgressColumn):
    """``done/total`` against an expected total, ``done`` alone without one (a phase whose
    size is not known in advance)."""

    def render(self, task: Task) -> Text:
        done = f"{int(task.completed):,}"
        return Text(f"{done}/{int(task.total):,}" if task.total else done, style="progress.download")


class SyncProgress:
    """The live display of one source's sync on stderr (nothing when it is no terminal)."""

    def __init__(self, console: Console, source: str, expected: int | None):
        total_known = bool(expected)
        columns: list[ProgressColumn] = [SpinnerColumn(), TextColumn("[bold]{task.description}")]
        if total_known:
            columns.append(BarColumn())
        columns += [CountColumn(), RateColumn(), TimeElapsedColumn()]
        if total_known:
            columns += [TextColumn("left"), TimeRemainingColumn()]
        self.progress = Progress(*columns, console=console, refresh_per_second=4, disable=not console.is_terminal)
        self.source = source
        self.expected = expected or None
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> SyncProgress:
        self.progress.start()
        self.tasks["users"] = self.progress.add_task(f"{self.source}: users", total=self.expected)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def __call__(self, phase: str, n: int) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(f"{self.source}: {phase}", total=None)
        self.progress.advance(self.tasks[phase], n)


def _expected_users(rt: Any, source: str, full: bool) -> int | None:
    """Users the last complete full sync read: the total a full sync is measured against
    (None for an incremental sync, or before the first full one)."""
    from sqlalchemy import select

    from bridge.services.runs import COMPLETE
    from bridge.store.models import RunMode, SyncRun

    if not full:
        return None
    with rt.store.read() as session:
        detail = session.scalar(select(SyncRun.detail).where(
            SyncRun.source == source, SyncRun.mode == RunMode.full, SyncRun.dry_run.is_(False),
            SyncRun.status.in_(COMPLETE)).order_by(SyncRun.id.desc()).limit(1))
    read = ((detail or {}).get("counts") or {}).get("users_read")
    return int(read) if read else None


def _table(result: SyncResult) -> Table:
    c = result.counts
    title = f"{result.source}: {result.mode} sync{' (dry run)' if result.dry_run else ''}, {result.status}"
    table = Table(title=title, title_justify="left", show_edge=False)
    for column in ("", "added", "updated", "removed", "unchanged", "errors"):
        table.add_column(column, justify="left" if not column else "right")
    removed = f"{c.deactivated} deactivated" + (f", {c.deleted} deleted" if c.deleted else "")
    table.add_row("users", str(c.added), str(c.updated), removed, str(c.unchanged), str(c.errors))
    table.add_row("groups", str(c.groups_added), str(c.groups_updated), str(c.groups_removed), "", "")
    table.add_row("memberships", str(c.memberships_added), "", str(c.memberships_removed), "", "")
    return table


def _report(out: Console, result: SyncResult, show_all: bool) -> None:
    """The outcome as plain lines (stdout; errors on stderr), and on a terminal the table."""
    if result.plan is not None:
        lines = result.plan.lines()
        shown = lines if show_all else lines[:PLAN_LINES]
        click.echo(f"plan for {result.source} ({result.mode} sync, dry run: nothing was changed):")
        for line in shown:
            click.echo(f"  {line}")
        if not lines:
            click.echo("  nothing to do")
        elif len(lines) > len(shown):
            click.echo(f"  ... and {len(lines) - len(shown)} more changes (--all shows every one, "
                       f"--output json gives them to a program)")
    click.echo(result.summary())
    if out.is_terminal:
        out.print(_table(result))
    for error in result.errors[:ERROR_LINES]:
        click.echo(f"  error: {error}", err=True)
    if len(result.errors) > ERROR_LINES:
        click.echo(f"  ... and {len(result.errors) - ERROR_LINES} more errors (see the sync run record)", err=True)
    if result.status == RunStatus.failed:
        click.echo(f"dirbridge: sync of {result.source} failed: {result.error}", err=True)
    if result.status == RunStatus.guarded:
        click.echo(f"dirbridge: the deletion guard stopped the removals of {result.source}: {result.guard}",
                   err=True)
        for user in result.would_remove[:20]:
            click.echo(f"  would remove {user['user_name']} ({user['dn']})", err=True)
        if len(result.would_remove) > 20:
            click.echo(f"  ... and {len(result.would_remove) - 20} more", err=True)
        click.echo(f"check the list, then run: dirbridge sync {result.source} --approve-deletions", err=True)


def _as_json(result: SyncResult) -> dict[str, Any]:
    plan = result.plan
    return {
        "source": result.source, "run": result.run_id, "mode": result.mode, "dry_run": result.dry_run,
        "status": result.status, "counts": result.counts.as_dict(), "errors": result.errors, "error": result.error,
        "guard": result.guard,
        "plan": None if plan is None else {
            "users_added": plan.adds, "users_updated": plan.updates, "users_removed": plan.removals,
            "groups_added": plan.group_adds, "groups_updated": plan.group_updates,
            "groups_removed": plan.group_removals, "memberships": plan.member_changes},
    }


@click.command("sync")
@click.argument("source", required=False)
@click.option("--full", is_flag=True, help="a full sync (reconciliation) instead of the incremental one")
@click.option("--dry-run", is_flag=True, help="print the plan and change nothing")
@click.option("--approve-deletions", is_flag=True,
              help="approve the removals of the run the deletion guard stopped, and apply them")
@click.option("--all", "show_all", is_flag=True, help=f"a dry run's every change (else the first {PLAN_LINES})")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@config_option
def sync(source: str | None, full: bool, dry_run: bool, approve_deletions: bool, show_all: bool, output: str,
         config_path: Path | None) -> None:
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
    out, err = Console(highlight=False), Console(stderr=True, highlight=False)
    ok, results = True, []
    for name in names:
        expected = _expected_users(rt, name, full or approve_deletions)
        try:
            with SyncProgress(err, name, expected) as progress:
                result = run_sync(rt, name, full=full, dry_run=dry_run, approve_deletions=approve_deletions,
                                  progress=progress)
        except NothingToApprove as exc:
            fail(str(exc), EXIT_USAGE)
        except SyncBusy as exc:
            click.echo(f"dirbridge: {exc}", err=True)
            ok = False
            continue
        if output == "json":
            results.append(_as_json(result))
        else:
            _report(out, result, show_all)
        ok = ok and result.status in SUCCEEDED and not result.errors
    if output == "json":
        click.echo(json.dumps(results if source is None else results[0] if results else None, indent=2,
                              default=str))
    if not ok:
        sys.exit(EXIT_FAILURE)
