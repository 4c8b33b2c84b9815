"""``pipeline config check``: the configuration, validated and resolved."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import yaml

from pipeline.cli.common import CONFIG_OPTION, print_json, read_settings
from pipeline.config import describe, missing_secrets


@click.group()
def config() -> None:
    """The configuration: pipeline.yml, environments/*.yml and the environment."""


@config.command("check")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the resolved plan as JSON.")
def config_check(config_path: Path, as_json: bool) -> None:
    """Validate everything and print the resolved plan (secrets redacted); exit 2 on any problem."""
    settings = read_settings(config_path, require_secrets=False)
    plan = describe(settings)
    missing = missing_secrets(settings)
    if as_json:
        print_json(plan)
    else:
        click.echo(yaml.safe_dump(plan, sort_keys=False).rstrip())
    if missing:
        for problem in missing:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    if not as_json:
        click.echo("configuration OK", err=True)
