"""CLI verbs of the accounts: ``invite``, ``import``, ``user unlock``, ``user reset-password``,
``user totp enrol|confirm|reset`` and ``operator add|remove`` (the first operator without
the admin API).

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
from bridge.services import ServiceError, UnitOfWork
from bridge.store.models import User


def _cmd(command: str, config_path: Path | None) -> str:
    """A command to suggest, with the --config this one was given (else it would open
    another store, the embedded default's)."""
    return f"dirbridge {command}" + (f" --config {config_path}" if config_path else "")


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
    """Set a temporary password, printed once on stdout: a local user must change it at the
    first login; a directory user's is set in the directory (when its source allows resets)."""
    from bridge.accounts.selfservice import reset_by_admin

    ctx = _context(config_path)
    temporary = with_user(ctx.services, user_name, lambda uow, user: reset_by_admin(ctx, uow, user))
    click.echo(f"temporary password of {user_name} (shown once; a local user must change it at the first "
               "login):", err=True)
    click.echo(temporary)


# -- the first operator, from the terminal ---------------------------------------------------


@click.group("operator")
def operator() -> None:
    """Who may use the status page (the right dirbridge.operate at instance)."""


@operator.command("add")
@click.argument("user_name")
@config_option
def operator_add(user_name: str, config_path: Path | None) -> None:
    """Give USER the operator right, and say what USER still needs to log in to /status."""
    from bridge.accounts import enrolment
    from bridge.mapping.apply import OPERATE_RIGHT

    ctx = _context(config_path)

    def give(uow: UnitOfWork, user: User) -> tuple[bool, bool, bool]:
        _, added = uow.grants.give_right(user.id, OPERATE_RIGHT, "instance")
        return added, user.password_hash is not None or user.source != "local", enrolment.enrolled(uow, user)

    with ctx.services.read(cli_actor()) as uow:
        if uow.users.find_by_user_name(user_name) is None:
            fail(f"no user named {user_name!r}; make one first: "
                 + _cmd(f"user create {user_name} --email ADDRESS", config_path))
    added, has_password, has_totp = with_user(ctx.services, user_name, give)
    click.echo(f"{user_name} {'is now' if added else 'already was'} an operator ({OPERATE_RIGHT} at instance)")
    if not has_password:
        click.echo(f"  next: a password: {_cmd(f'user reset-password {user_name}', config_path)}")
    if not has_totp:
        enrol = _cmd(f"user totp enrol {user_name}", config_path)
        click.echo(f"  next: TOTP (the status page asks for a code): {enrol}")
    if has_password and has_totp:
        click.echo("  ready: log in at /status/login")


@operator.command("remove")
@click.argument("user_name")
@config_option
def operator_remove(user_name: str, config_path: Path | None) -> None:
    """Take the operator right from USER; their status-page sessions end within 5 minutes."""
    from bridge.mapping.apply import OPERATE_RIGHT

    ctx = _context(config_path)
    with_user(ctx.services, user_name, lambda uow, user: uow.grants.take_right(user.id, OPERATE_RIGHT, "instance"))
    click.echo(f"{user_name} is no longer an operator")


@click.group("totp")
def user_totp() -> None:
    """A user's TOTP second factor: enrol, confirm, reset."""


@user_totp.command("enrol")
@click.argument("user_name")
@config_option
def totp_enrol(user_name: str, config_path: Path | None) -> None:
    """Show the QR code and the otpauth URI for USER's authenticator app, then (on a
    terminal) confirm with its first code; prints the recovery codes once. Each enrol makes
    a new secret: a QR code scanned from an earlier one no longer counts."""
    import segno

    from bridge.accounts import enrolment

    ctx = _context(config_path)
    started = with_user(ctx.services, user_name, lambda uow, user: enrolment.start(ctx, uow, user))
    click.echo(f"scan this with {user_name}'s authenticator app (or type the URI in):", err=True)
    segno.make(started.uri, error="m").terminal(out=sys.stderr, compact=True)
    click.echo(started.uri)
    if not sys.stdin.isatty():
        click.echo("scan it, then confirm with the app's first code: "
                   + _cmd(f"user totp confirm {user_name} CODE", config_path), err=True)
        return
    _confirm(ctx, user_name, click.prompt("the app's code", err=True))


@user_totp.command("confirm")
@click.argument("user_name")
@click.argument("code")
@config_option
def totp_confirm(user_name: str, code: str, config_path: Path | None) -> None:
    """Confirm USER's pending enrolment with the app's current code."""
    _confirm(_context(config_path), user_name, code)


def _confirm(ctx: AccountsContext, user_name: str, code: str) -> None:
    from bridge.accounts import enrolment

    codes = with_user(ctx.services, user_name, lambda uow, user: enrolment.confirm(ctx, uow, user, code.strip()))
    click.echo(f"TOTP of {user_name} confirmed. Recovery codes (shown once; each works once instead of a code):",
               err=True)
    for recovery in codes:
        click.echo(recovery)


@user_totp.command("reset")
@click.argument("user_name")
@config_option
def totp_reset(user_name: str, config_path: Path | None) -> None:
    """Remove USER's TOTP (a lost phone): they enrol again."""
    ctx = _context(config_path)
    removed = with_user(ctx.services, user_name, lambda uow, user: uow.accounts.reset_totp(user))
    click.echo(f"TOTP of {user_name} {'removed' if removed else 'was not set up'}; enrol again with: "
               + _cmd(f"user totp enrol {user_name}", config_path))
