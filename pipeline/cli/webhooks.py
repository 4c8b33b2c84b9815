"""``pipeline webhooks install``: the repository's webhook, registered or updated."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from pipeline.cli.common import CONFIG_OPTION, build_services, read_settings
from pipeline.config import missing_webhook_secret
from pipeline.errors import ExternalError
from pipeline.web.app import WEBHOOK_PATH


@click.group()
def webhooks() -> None:
    """Bitbucket webhooks: a merge, a build result or an approval starts a pass at once."""


@webhooks.command("install")
@CONFIG_OPTION
@click.option(
    "--url",
    default=None,
    help="Where Bitbucket posts (default: webhooks.public_url, else http://<host>:<port>/webhooks/bitbucket).",
)
def webhooks_install(config_path: Path, url: str | None) -> None:
    """Register the webhook, with BITBUCKET_WEBHOOK_SECRET, on the repository (or update it:
    running it again changes nothing but the secret, events and URL it was given)."""
    settings = read_settings(config_path)
    hooks = settings.webhooks
    if hooks is None:
        click.echo(
            f"error: {settings.config_path.name}: webhooks: not configured: add webhooks: "
            "{host, port, public_url} so serve listens for deliveries",
            err=True,
        )
        sys.exit(2)
    for problem in missing_webhook_secret(settings):
        click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    target = url or hooks.public_url
    if target is None:
        if hooks.port == 0:
            click.echo(
                f"error: {settings.config_path.name}: webhooks.public_url: needed when webhooks.port is 0 "
                "(any free port): set it to where Bitbucket reaches serve, or give --url",
                err=True,
            )
            sys.exit(2)
        target = f"http://{hooks.host}:{hooks.port}{WEBHOOK_PATH}"
    elif not re.match(r"https?://[^/]+", target):
        click.echo(
            f"error: --url: expected an http:// or https:// URL such as https://ci.example{WEBHOOK_PATH}",
            err=True,
        )
        sys.exit(2)
    services = build_services(settings)
    try:
        hook, outcome = services.install_webhook(target)
    except ExternalError as exc:
        raise click.ClickException(f"could not register the webhook: {exc}") from exc
    src = settings.source
    click.echo(
        f"Webhook {outcome} on {src.workspace}/{src.repository}: {hook.url} ({hook.uuid}), signed with "
        f"BITBUCKET_WEBHOOK_SECRET, for {len(hook.events)} events: {', '.join(hook.events)}"
    )
