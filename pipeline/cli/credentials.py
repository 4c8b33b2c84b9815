"""``pipeline credentials check``: the controller's credentials, checked after rotating them."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.common import CONFIG_OPTION, services_for
from pipeline.errors import ExternalError


@click.group()
def credentials() -> None:
    """The controller's credentials (BITBUCKET_TOKEN, HEROKU_API_KEY, BITBUCKET_WEBHOOK_SECRET)."""


@credentials.command("check")
@CONFIG_OPTION
@click.option("--webhook-url", default=None, help="Where the webhook points (default: webhooks.public_url).")
def credentials_check(config_path: Path, webhook_url: str | None) -> None:
    """Check the credentials in the environment (after rotating them): each works and reaches what
    the controller needs; the webhook gets the secret again. Recorded in the history, never shown."""
    services = services_for(config_path)
    try:
        lines = services.rotate_credentials(webhook_url)
    except ExternalError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in lines:
        click.echo(line)
