"""What every dirbridge command shares: --config, exit codes, loading the config and the store.

Kept apart from bridge.cli so that the commands of bridge.ldap, bridge.mapping and
bridge.accounts can use it while bridge.cli imports them: no import cycle.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from bridge.config import Config, ConfigError, load_config
from bridge.runtime import NotMigrated, Runtime, build_runtime, open_store
from bridge.services import Actor, Services

EXIT_FAILURE = 1
EXIT_USAGE = 2
F = TypeVar("F", bound=Callable[..., Any])


#: where ``dirbridge --config F COMMAND`` leaves F for the command (click's context meta)
GIVEN_CONFIG = "dirbridge.config"


def _config_given_first(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """``dirbridge --config F COMMAND`` and ``dirbridge COMMAND --config F`` mean the same; a
    --config on the command line, before or after, wins over $DIRBRIDGE_CONFIG."""
    from click.core import ParameterSource

    before = ctx.meta.get(GIVEN_CONFIG)
    if before is None:
        return value
    if param.name and ctx.get_parameter_source(param.name) == ParameterSource.COMMANDLINE and value != before:
        raise click.UsageError(f"--config is given twice: {before} and {value}")
    return Path(before)


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="DIRBRIDGE_CONFIG",
        callback=_config_given_first,
        help="config file (TOML); default: the embedded default, or $DIRBRIDGE_CONFIG",
    )(func)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"dirbridge: {message}", err=True)
    sys.exit(code)


def load(config_path: Path | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        where = f" in {config_path}" if config_path else ""
        click.echo(f"dirbridge: the configuration{where} is not valid:", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(EXIT_USAGE)


def cli_actor() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(name=f"cli:{user}", channel="cli")


def services_for(config: Config) -> Services:
    try:
        store = open_store(config)
    except NotMigrated as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"cannot open the database: {type(exc).__name__}: {exc.args[0] if exc.args else ''}")
    return Services(store, config)


def build_runtime_or_fail(config: Config) -> Runtime:
    try:
        return build_runtime(config)
    except NotMigrated as exc:
        fail(str(exc))


T = TypeVar("T")


def with_user(services: Services, user_name: str, action: Callable[[Any, Any], T]) -> T:
    """Run ``action(uow, user)`` in one unit of work; exit 1 for an unknown user or a refusal."""
    from bridge.services import ServiceError

    try:
        with services.unit(cli_actor()) as uow:
            user = uow.users.find_by_user_name(user_name)
            if user is None:
                fail(f"no user named {user_name!r}")
            return action(uow, user)
    except ServiceError as exc:
        fail(exc.message)
