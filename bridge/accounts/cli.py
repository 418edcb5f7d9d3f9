"""CLI verbs of the accounts: ``invite``, ``import``, ``user unlock``, ``user reset-password``.

Registered in bridge.cli next to the other commands; same exit codes (0 done,
1 the work failed, 2 bad usage or config).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bridge.accounts.context import AccountsContext, context_for
from bridge.cli_common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    build_runtime_or_fail,
    cli_actor,
    config_option,
    fail,
    load,
    with_user,
)
from bridge.services import ServiceError


def _context(config_path: Path | None) -> AccountsContext:
    """The accounts context on a runtime: the config's roles and scopes are applied first."""
    return context_for(build_runtime_or_fail(load(config_path)))


@click.command("invite")
@click.argument("email")
@click.option("--role", "roles", multiple=True, metavar="ROLE@SCOPE", help="grant a role (repeatable)")
@click.option("--customer", metavar="NUMBER", help="make the user an external user of this customer")
@click.option("--username", "user_name", help="the login name (default: the e-mail address)")
@click.option("--name", "display_name", help="display name, used in the mail")
@click.option("--language", type=click.Choice(["de", "en"]), help="language of the mail and the pages")
@click.option("--access-type", type=click.Choice(["admin", "backend", "api"]), default="backend", show_default=True)
@config_option
def invite(email: str, roles: tuple[str, ...], customer: str | None, user_name: str | None,
           display_name: str | None, language: str | None, access_type: str, config_path: Path | None) -> None:
    """Create a local user and mail the invitation (a link to set the password)."""
    from bridge.accounts.invitations import NewUser, create_and_invite

    ctx = _context(config_path)
    new = NewUser(email=email, user_name=user_name, display_name=display_name, preferred_language=language,
                  access_type=access_type, customer=customer, roles=roles)
    try:
        with ctx.services.unit(cli_actor()) as uow:
            user, invitation = create_and_invite(ctx, uow, new)
            name, expires = user.user_name, invitation.expires_at
    except ServiceError as exc:
        fail(exc.message)
    click.echo(f"invited {name} <{email}>; the link works once, until {expires:%Y-%m-%d %H:%M} UTC")


@click.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="check every row and show what would change, change nothing")
@config_option
def import_csv(csv_file: Path, dry_run: bool, config_path: Path | None) -> None:
    """Create or update users from a CSV file: all rows or none (see the docs for columns)."""
    from bridge.accounts.csv_import import import_users
    from bridge.services import Actor

    config = load(config_path)
    try:
        text = csv_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {csv_file}: {exc}", EXIT_USAGE)
    actor = Actor(name=cli_actor().name, channel="import")
    report = import_users(build_runtime_or_fail(config).services, actor, text, dry_run=dry_run)
    for problem in report.problems:
        click.echo(f"{csv_file}: {problem}", err=True)
    if report.problems:
        sys.exit(EXIT_USAGE)
    for row in report.rows:
        if row.error:
            click.echo(f"{csv_file}:{row.line}: {row.user_name or '(no user_name)'}: {row.error}", err=True)
        else:
            click.echo(f"line {row.line}: {row.action:<9} {row.user_name}")
    summary = (f"{report.count('create')} created, {report.count('update')} updated, "
               f"{report.count('unchanged')} unchanged, {len(report.errors)} errors")
    if report.errors:
        click.echo(f"nothing was imported: {summary}", err=True)
        sys.exit(EXIT_FAILURE)
    click.echo(f"dry run, nothing changed: {summary}" if dry_run else f"imported: {summary}")


@click.command("unlock")
@click.argument("user_name")
@config_option
def user_unlock(user_name: str, config_path: Path | None) -> None:
    """Lift a lock after failed logins before its time. An expired password locks again at the
    next login: give the user a new one with 'dirbridge user reset-password'."""
    ctx = _context(config_path)
    was_locked = with_user(ctx.services, user_name, lambda uow, user: uow.accounts.unlock(user, now=ctx.now()))
    click.echo(f"{user_name} unlocked" if was_locked else f"{user_name} was not locked; failure count reset")


@click.command("reset-password")
@click.argument("user_name")
@config_option
def user_reset_password(user_name: str, config_path: Path | None) -> None:
    """Set a temporary password, printed once on stdout; it must be changed at the first login."""
    from bridge.accounts.credentials import reset_to_temporary

    ctx = _context(config_path)
    temporary = with_user(ctx.services, user_name, lambda uow, user: reset_to_temporary(ctx, uow, user))
    click.echo(f"temporary password of {user_name} (shown once; it must be changed at the first login):",
               err=True)
    click.echo(temporary)
