"""The ``dirbridge`` command line.

Exit codes: 0 success, 1 the work failed, 2 bad usage or bad config.
Every command takes ``--config FILE``; ``DIRBRIDGE_CONFIG`` sets it too.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from bridge import __version__
from bridge.accounts import cli as accounts_cli
from bridge.cli_common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    GIVEN_CONFIG,
    build_runtime_or_fail,
    cli_actor,
    config_option,
    fail,
    load,
    services_for,
    with_user,
)
from bridge.ldap import cli as ldap_cli
from bridge.logs import setup_logging
from bridge.mapping import cli as mapping_cli
from bridge.runtime import NotMigrated, build_runtime
from bridge.services import ServiceError
from bridge.store.models import LARGEST_ROW_ID, TokenKind


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dirbridge")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="config file (TOML) for the command that follows (it may also come after it)")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """dirbridge: SCIM and LDAP in, roles, scopes and rights-groups out."""
    if config_path is not None:  # every command's own --config takes this one (bridge.cli_common)
        ctx.meta[GIVEN_CONFIG] = config_path


@cli.command()
@config_option
def serve(config_path: Path | None) -> None:
    """Run the daemon: HTTP server and scheduler."""
    from bridge.daemon import serve as run_daemon

    config = load(config_path)
    setup_logging(config.logging.level, config.logging.format, config.secret_values())
    try:
        rt = build_runtime(config)
    except NotMigrated as exc:
        fail(str(exc))
    try:
        run_daemon(rt)
    except OSError as exc:
        fail(f"cannot listen on {config.server.listen}: {exc.strerror or exc}")


@cli.command("check-config")
@config_option
def check_config(config_path: Path | None) -> None:
    """Validate the config, then try the database and each LDAP source as a sync would:
    bind, search users_base and groups_base, look at the attributes the preset reads."""
    from bridge.ldap.check import check_source
    from bridge.store import Store, migrate

    config = load(config_path)
    click.echo(f"config: ok ({config_path or 'embedded default'})")
    ok = True
    try:
        store = Store(config.database_url)
        store.ping()
        current, head = migrate.current_revision(store.engine), migrate.head_revision()
        state = "schema up to date" if current == head else f"schema at {current or 'nothing'}, needs {head}"
        click.echo(f"database: ok ({store.engine.dialect.name}, {state})")
        store.dispose()
    except SQLAlchemyError as exc:
        ok = False
        click.echo(f"database: FAILED ({type(exc).__name__})")
    for source in config.ldap.sources:
        for finding in check_source(source):
            ok = ok and finding.level != "FAILED"
            click.echo(f"ldap source {source.name}: {finding.level} ({finding.text})")
        if source.tls.mode == "none" and source.bind_dn:
            click.echo(f"ldap source {source.name}: WARNING: tls.mode = \"none\": the bind password crosses the "
                       "network in clear")
    if config.smtp.cleartext_login():
        click.echo(f"smtp: WARNING: tls = \"none\" with a username: the password for {config.smtp.host}:"
                   f"{config.smtp.port} crosses the network in clear (use starttls or implicit)")
    if not ok:
        sys.exit(EXIT_FAILURE)


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@config_option
def db_upgrade(config_path: Path | None) -> None:
    """Apply pending schema migrations."""
    from bridge.store import Store, migrate

    config = load(config_path)
    try:
        store = Store(config.database_url)
        before, after = migrate.upgrade(store.engine)
        store.dispose()
    except SQLAlchemyError as exc:
        fail(f"migration failed: {type(exc).__name__}: {exc.args[0] if exc.args else ''}")
    if before == after:
        click.echo(f"database schema is up to date ({after})")
    else:
        click.echo(f"database schema upgraded from {before or 'nothing'} to {after}")


@cli.group()
def token() -> None:
    """Bearer tokens of SCIM clients and admin API clients."""


@token.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="an admin API token instead of a SCIM client token")
@config_option
def token_create(name: str, admin: bool, config_path: Path | None) -> None:
    """Create a token and print it once, alone on its line on stdout."""
    services = services_for(load(config_path))
    kind = TokenKind.admin if admin else TokenKind.scim
    try:
        with services.unit(cli_actor()) as uow:
            _, plain = uow.tokens.create(name, kind)
    except ServiceError as exc:
        fail(exc.message)
    click.echo(f"created {kind.value} token {name!r}; it is shown once, only its hash is stored:", err=True)
    click.echo(plain)


@token.command("rotate")
@click.argument("name")
@config_option
def token_rotate(name: str, config_path: Path | None) -> None:
    """Give a client a new token under the same name and print it once; the old one stops
    working at once (paste the new one into the IdP right away)."""
    services = services_for(load(config_path))
    try:
        with services.unit(cli_actor()) as uow:
            token, plain = uow.tokens.rotate(name)
    except ServiceError as exc:
        fail(exc.message)
    click.echo(f"rotated {token.kind.value} token {name!r}; the old one is refused from now on. "
               "The new one is shown once:", err=True)
    click.echo(plain)


@token.command("list")
@config_option
def token_list(config_path: Path | None) -> None:
    """List tokens (names, kinds, prefixes; never the tokens)."""
    services = services_for(load(config_path))
    with services.unit(cli_actor()) as uow:
        tokens = uow.tokens.all()
    if not tokens:
        click.echo("no tokens")
    for t in tokens:
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        click.echo(f"{t.name:<24} {t.kind.value:<6} dbr_{t.prefix}_…  created {t.created_at:%Y-%m-%d %H:%M}  "
                   f"last used {used}  {state}")


@token.command("revoke")
@click.argument("name")
@config_option
def token_revoke(name: str, config_path: Path | None) -> None:
    """Revoke a token; clients using it are refused from now on."""
    services = services_for(load(config_path))
    try:
        with services.unit(cli_actor()) as uow:
            uow.tokens.revoke(name)
    except ServiceError as exc:
        fail(exc.message)
    click.echo(f"token {name!r} revoked")


@cli.group()
def user() -> None:
    """Users: create, list, activate, deactivate, delete, unlock, reset a password."""


@user.command("create")
@click.argument("user_name")
@click.option("--email", required=True, help="where invitations and resets go")
@click.option("--name", "display_name", help="display name")
@click.option("--access-type", type=click.Choice(["admin", "backend", "api"]), default="backend", show_default=True)
@click.option("--kind", type=click.Choice(["internal", "external"]), default="internal", show_default=True)
@config_option
def user_create(user_name: str, email: str, display_name: str | None, access_type: str, kind: str,
                config_path: Path | None) -> None:
    """Create a local user; prints its id."""
    services = services_for(load(config_path))
    try:
        with services.unit(cli_actor()) as uow:
            created = uow.users.create(user_name=user_name, email=email, display_name=display_name,
                                       access_type=access_type, kind=kind)
    except ServiceError as exc:
        fail(exc.message)
    click.echo(created.id)


@user.command("list")
@click.option("--access-type", type=click.Choice(["admin", "backend", "api"]))
@click.option("--source", help="only users of this source (local, scim:NAME, ldap:NAME)")
@click.option("--inactive/--active-only", default=True, help="include inactive users (default) or not")
@config_option
def user_list(access_type: str | None, source: str | None, inactive: bool, config_path: Path | None) -> None:
    """List users: name, access type, source, state."""
    from sqlalchemy import select

    from bridge.store.models import User

    services = services_for(load(config_path))
    query = select(User).order_by(User.user_name_key)
    if access_type:
        query = query.where(User.access_type == access_type)
    if source:
        query = query.where(User.source == source)
    if not inactive:
        query = query.where(User.active.is_(True))
    with services.store.read() as session:
        click.echo(f"{'USERNAME':<32} {'ACCESS':<8} {'SOURCE':<16} {'STATE':<8} ID")
        for u in session.scalars(query):
            state = "active" if u.active else "inactive"
            click.echo(f"{u.user_name:<32} {u.access_type.value:<8} {u.source:<16} {state:<8} {u.id}")


@user.command("deactivate")
@click.argument("user_name")
@config_option
def user_deactivate(user_name: str, config_path: Path | None) -> None:
    """Deactivate a user (the normal way to remove access)."""
    with_user(services_for(load(config_path)), user_name, lambda uow, u: uow.users.deactivate(u))
    click.echo(f"{user_name} deactivated")


@user.command("activate")
@click.argument("user_name")
@config_option
def user_activate(user_name: str, config_path: Path | None) -> None:
    """Activate a user again."""
    with_user(services_for(load(config_path)), user_name, lambda uow, u: uow.users.update(u, active=True))
    click.echo(f"{user_name} activated")


@user.command("delete")
@click.argument("user_name")
@click.option("--yes", is_flag=True, help="confirm: deleting cannot be undone")
@config_option
def user_delete(user_name: str, yes: bool, config_path: Path | None) -> None:
    """Delete a user for good (deactivate is usually what you want)."""
    if not yes:
        fail("deleting a user cannot be undone; add --yes to confirm", EXIT_USAGE)
    with_user(services_for(load(config_path)), user_name, lambda uow, u: uow.users.delete(u))
    click.echo(f"{user_name} deleted")


@cli.group(invoke_without_command=True)
@config_option
@click.pass_context
def jobs(ctx: click.Context, config_path: Path | None) -> None:
    """List the scheduled jobs and their last runs; 'jobs run NAME' runs one now."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = config_path
        return
    from sqlalchemy import select

    from bridge.jobs.leader import current_leader
    from bridge.jobs.registry import job_specs
    from bridge.store.models import JobRun

    rt = build_runtime_or_fail(load(config_path))
    lease = current_leader(rt.store)
    if lease is None:
        click.echo("leader: none yet (no 'dirbridge serve' has run the scheduler)")
    else:
        alive = "holds the lease" if lease.expires_at > rt.clock() else "lease ran out"
        click.echo(f"leader: {lease.holder} ({alive} until {lease.expires_at:%Y-%m-%d %H:%M:%S} UTC, "
                   f"since {lease.acquired_at:%Y-%m-%d %H:%M:%S})")
    with rt.store.read() as session:
        for spec in job_specs(rt):
            last = session.scalar(select(JobRun).where(JobRun.job == spec.name)
                                  .order_by(JobRun.started_at.desc()).limit(1))
            last_text = f"last {last.started_at:%Y-%m-%d %H:%M} {last.outcome}" if last else "never run"
            click.echo(f"{spec.name:<28} every {spec.schedule:<10} {last_text}  ({spec.description})")


@jobs.command("run")
@click.argument("name")
@click.option("--here", is_flag=True,
              help="run it in this process even while a 'dirbridge serve' replica leads the jobs")
@config_option
@click.pass_context
def jobs_run(ctx: click.Context, name: str, here: bool, config_path: Path | None) -> None:
    """Run one job now (where no replica leads the scheduled jobs, or with --here)."""
    from bridge.jobs.runner import NotLeader
    from bridge.jobs.scheduler import find_job, run_job

    rt = build_runtime_or_fail(load(config_path or ctx.obj))
    try:
        spec = find_job(rt, name)
    except ServiceError as exc:
        fail(exc.message, EXIT_USAGE)
    try:
        run = run_job(rt, spec, by_hand=not here)
    except NotLeader as exc:
        fail(f"{exc.message} (POST /api/v1/jobs/{spec.name}/run), or add --here to run it in this process")
    except SQLAlchemyError as exc:
        fail(f"{spec.name} could not be recorded: the database failed ({type(exc).__name__})")
    took = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
    counts = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in (run.counts or {}).items())
    click.echo(f"{spec.name}: {run.outcome} in {took:.1f} s" + (f" ({counts})" if counts else "")
               + (f": {run.message}" if run.message else "") + f"  [job run {run.id}]")
    if run.outcome != "ok":
        sys.exit(EXIT_FAILURE)


_CONTROL = dict.fromkeys([*range(0x00, 0x20), *range(0x7F, 0xA0)], "\ufffd")


def _shown(text: str) -> str:
    """Recorded text as a terminal may print it: control characters (escape sequences an
    unauthenticated login name can carry) replaced."""
    return text.translate(_CONTROL)


def _cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a leading = + - @ (a formula) is quoted."""
    if isinstance(value, str):
        value = _shown(value)
        if value[:1] in ("=", "+", "-", "@"):
            return "'" + value
    return value


@cli.group()
def customer() -> None:
    """Customers: list and search (the rest through the admin API)."""


@customer.command("list")
@click.option("--search", "text", help="part of the number, name or short name (any case)")
@click.option("--agency/--no-agency", default=None, help="agencies only, or no agencies")
@click.option("--remote-access/--no-remote-access", default=None, help="remote access on, or off")
@click.option("--limit", type=click.IntRange(1, 100000), default=1000, show_default=True)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@config_option
def customer_list(text: str | None, agency: bool | None, remote_access: bool | None, limit: int, output: str,
                  config_path: Path | None) -> None:
    """List customers by number, searched and filtered as GET /api/v1/customers."""
    import json

    services = services_for(load(config_path))
    with services.read(cli_actor()) as uow:
        total, rows = uow.customers.search(text, agency=agency, remote_access=remote_access, limit=limit)
        found: list[dict[str, Any]] = [{"id": c.id, "number": c.number, "name": c.name, "short_name": c.short_name,
                  "agency": c.agency, "remote_access": c.remote_access} for c in rows]
    if output == "json":
        click.echo(json.dumps({"total": total, "items": found}, indent=2))
        return
    click.echo(f"{'NUMBER':<12} {'NAME':<40} {'SHORT':<12} {'AGENCY':<7} REMOTE ACCESS")
    for c in found:
        click.echo(f"{c['number']:<12} {_shown(c['name'])[:40]:<40} {_shown(c['short_name'] or '')[:12]:<12} "
                   f"{'yes' if c['agency'] else 'no':<7} {'on' if c['remote_access'] else 'off'}")
    if total > len(found):
        click.echo(f"{len(found)} of {total} (--limit for more)", err=True)


def _when(value: str | None) -> datetime | None:
    """An ISO 8601 time; without a zone it is UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        parsed.astimezone(UTC)  # a time at the edge of the calendar cannot be put in UTC
    except (ValueError, OverflowError):
        fail(f"{value!r} is not a time (ISO 8601: 2026-12-01 or 2026-12-01T08:00+01:00)", EXIT_USAGE)
    return parsed


@cli.command("audit")
@click.option("--actor")
@click.option("--source", help="local, scim:CLIENT or ldap:SOURCE")
@click.option("--channel", help="scim, admin-api, cli, ldap-sync, status-page, import, startup ...")
@click.option("--action", help="exact, or a prefix ending in * (user.*)")
@click.option("--user", "user_ref", help="a user's id or userName: the events about them")
@click.option("--since", help="at or after this time (ISO 8601; UTC unless it says)")
@click.option("--until", help="before this time")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@click.option("--output", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
@config_option
def audit_search(actor: str | None, source: str | None, channel: str | None, action: str | None,
                 user_ref: str | None, since: str | None, until: str | None, limit: int, output: str,
                 config_path: Path | None) -> None:
    """Search the audit log, newest first (the same filters as GET /api/v1/audit)."""
    import csv
    import json

    from bridge.services.audit import AuditQuery, search

    services = services_for(load(config_path))
    query = AuditQuery(actor=actor, source=source, channel=channel, action=action, user=user_ref,
                       since=_when(since), until=_when(until))
    with services.store.read() as session:
        total, events = search(session, query, limit=limit)
        rows: list[dict[str, Any]] = [
            {"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "source": e.source, "channel": e.channel,
             "action": e.action, "target_type": e.target_type, "target_id": e.target_id,
             "target_name": e.target_name, "changes": e.changes or {}, "request_id": e.request_id}
            for e in events]
    if output == "json":
        click.echo(json.dumps({"total": total, "items": rows}, indent=2))  # non-ASCII escaped, controls too
    elif output == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["id"], lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _cell(json.dumps(value, ensure_ascii=False) if key == "changes" else value)
                             for key, value in row.items()})
    else:
        rows = [{key: _shown(value) if isinstance(value, str) else value for key, value in row.items()}
                for row in rows]
        click.echo(f"{'AT (UTC)':<20} {'ACTOR':<24} {'CHANNEL':<12} {'ACTION':<22} TARGET")
        for row in rows:
            target = f"{row['target_type']} {row['target_name'] or row['target_id'] or ''}".strip()
            fields = ", ".join(sorted(row["changes"]))
            click.echo(f"{row['at'][:19].replace('T', ' '):<20} {row['actor'][:24]:<24} {row['channel'][:12]:<12} "
                       f"{row['action'][:22]:<22} {target}" + (f" ({fields})" if fields else ""))
        shown = len(rows)
        click.echo(f"{shown} of {total} event(s)" + (" (--limit for more)" if total > shown else ""), err=True)


@cli.group(invoke_without_command=True)
@config_option
@click.pass_context
def conflicts(ctx: click.Context, config_path: Path | None) -> None:
    """Conflicts between sources (a name or entry another source holds); lists the open ones."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = config_path
        return
    from bridge.services.conflicts import open_conflicts, open_total

    services = services_for(load(config_path))
    with services.store.read() as session:
        rows, total = open_conflicts(session, limit=1000), open_total(session)
    if not rows:
        click.echo("no open conflicts")
    for c in rows:
        click.echo(f"{c.id:<6} {c.kind:<10} {c.subject!r:<32} {c.source} vs {c.holder}  seen {c.count}x, "
                   f"last {c.last_seen:%Y-%m-%d %H:%M}")
    if total > len(rows):
        click.echo(f"... and {total - len(rows)} more")


@conflicts.command("close")
@click.argument("conflict_id", type=click.IntRange(1, LARGEST_ROW_ID))
@config_option
@click.pass_context
def conflicts_close(ctx: click.Context, conflict_id: int, config_path: Path | None) -> None:
    """Close an open conflict settled by hand (it opens again if the write is refused again)."""
    services = services_for(load(config_path or ctx.obj))
    if not services.close_conflict(cli_actor(), conflict_id):
        fail(f"no open conflict {conflict_id}", EXIT_USAGE)
    click.echo(f"conflict {conflict_id} closed")


@cli.group()
def totp() -> None:
    """TOTP secrets at rest."""


@totp.command("reseal")
@config_option
def totp_reseal(config_path: Path | None) -> None:
    """Seal every TOTP secret with the first key of policy.totp.key (after a key rotation;
    cleartext ones from older versions too). Then the old key may be dropped."""
    from bridge.accounts.vault import SealBroken

    rt = build_runtime_or_fail(load(config_path))
    try:
        written = rt.totp_vault.reseal(rt.store)
    except SealBroken as exc:
        fail(str(exc))
    click.echo(f"resealed {written} TOTP secret(s)")


cli.add_command(ldap_cli.sync)
cli.add_command(mapping_cli.explain)
cli.add_command(accounts_cli.invite)
cli.add_command(accounts_cli.import_csv)
user.add_command(accounts_cli.user_unlock)
user.add_command(accounts_cli.user_reset_password)
user.add_command(accounts_cli.user_totp)
cli.add_command(accounts_cli.operator)


def main() -> None:
    # whatever the daemon or a command writes (the store, secrets, exports) is its user's alone
    os.umask(0o077)
    for position, argument in enumerate(sys.argv[1:], start=1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8, kept by Python as lone surrogates
            shown = argument.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            click.echo(f"Error: argument {position} ({shown!r}) is not valid UTF-8", err=True)
            sys.exit(2)
    cli(prog_name="dirbridge")
