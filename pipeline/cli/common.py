"""What the commands share: the ``--config``, ``ENV`` and ``--reason`` options, the bounds of their
numbers, and the settings, services and exits every command builds the same way."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pipeline import bootstrap
from pipeline.config import Settings
from pipeline.errors import BadInput, ConfigInvalid, ExternalError, Refused
from pipeline.services import Services

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("pipeline.yml"),
    show_default=True,
    help="pipeline.yml; environments/ is read from beside it.",
)

REASON = click.option("--reason", required=True, help="Why: it goes into the history with your name.")
ENV = click.argument("env", metavar="ENV")

LARGEST_ID = 2**31 - 1
"""The largest id the store holds (its ids are INTEGER columns: 32 bits on PostgreSQL), and the
largest pull request or release number a command takes."""
ID = click.IntRange(1, LARGEST_ID)
COUNT = click.IntRange(1, LARGEST_ID)
"""How many rows to show (``--limit``): a larger number would overflow the database's LIMIT."""


class Seconds(click.FloatRange):
    """A number of seconds from ``min`` to ``max`` (``nan`` refused: it is no number, and compares
    neither below nor above a bound)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if isinstance(seconds, float) and math.isnan(seconds):
            self.fail("nan is not a number of seconds", param, ctx)
        return seconds


WEEK = 7 * 24 * 3600
TIMEOUT = Seconds(min=1, max=WEEK)
"""A command's ``--timeout``: at least a second, at most a week (not inf, not nan)."""


def read_settings(
    config_path: Path, *, require_secrets: bool = True, overrides: dict[str, str] | None = None
) -> Settings:
    """Settings, or exit 2 with one line per problem (file, key, what is expected)."""
    try:
        return bootstrap.settings(config_path, require_secrets=require_secrets, overrides=overrides)
    except ConfigInvalid as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)


def services_for(config_path: Path, *, connect: bool = True) -> Services:
    """The services for ``--config`` (``connect=False``: the store only); exits as ``read_settings``
    and ``build_services`` do."""
    settings = read_settings(config_path, require_secrets=connect)
    return build_services(settings, connect=connect)


def build_services(settings: Settings, *, connect: bool = True) -> Services:
    """The services; exit 2 when Bitbucket shows the configuration wrong (an approver no member of
    the workspace), 1 when a service refuses or cannot be reached."""
    try:
        return bootstrap.services(settings, connect=connect)
    except ConfigInvalid as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    except ExternalError as exc:
        raise click.ClickException(f"cannot start: {exc}") from exc


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def asked(run: Callable[[], Any]) -> Any:
    """Run a request, turning our refusals into exits: bad input 2 (nothing changed), refused 1."""
    try:
        return run()
    except BadInput as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Refused as exc:
        raise click.ClickException(str(exc)) from exc
