"""``dirbridge explain USER RIGHT SCOPE``: the check and its reasons, for a person."""

from __future__ import annotations

from pathlib import Path

import click

from bridge.cli_common import build_runtime_or_fail, config_option, fail, load
from bridge.mapping.engine import Decision, authorizer
from bridge.services import ServiceError


@click.command()
@click.argument("user")
@click.argument("right")
@click.argument("scope", default="instance")
@click.option("--interactive", is_flag=True, help="as for an interactive session (API users may nothing)")
@config_option
def explain(user: str, right: str, scope: str, interactive: bool, config_path: Path | None) -> None:
    """Say whether USER (userName or id) has RIGHT at SCOPE, and every chain that grants it.

    Exits 0 either way (the answer is on the first line); 1 for an unknown user or scope.
    """
    rt = build_runtime_or_fail(load(config_path))
    try:
        decision = authorizer(rt).check(user, right, scope, explain=True, interactive=interactive)
    except ServiceError as exc:
        fail(exc.message)
    finally:
        rt.store.dispose()
    chains = decision.because or []
    if decision.allowed:
        click.echo(f"ALLOWED: {decision.user_name} has {right} at {scope}, because:")
        for number, chain in enumerate(chains, start=1):
            click.echo(f"  {number}. {chain.text()}")
        if getattr(chains, "truncated", False):
            click.echo(f"  ... and more chains than the first {len(chains)} an explain lists.")
        _say_access(decision)
    else:
        click.echo(f"DENIED: {decision.user_name} does not have {right} at {scope}.")
        if not decision.active:
            click.echo("  The user is inactive: inactive users have no rights.")
        elif interactive and decision.access_type == "api":
            click.echo("  The user is an API user: API users may nothing interactively.")
        else:
            click.echo(f"  No grant, group, mapping rule or individual right gives it at {scope} or above.")
        _say_access(decision)


def _say_access(decision: Decision) -> None:
    """The rule that set the access type, or why the rules' answer was not applied."""
    text = decision.access_text()
    if text is not None:
        click.echo(f"  {text}")
