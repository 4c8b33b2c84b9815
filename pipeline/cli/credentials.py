"""``pipeline credentials check``: each credential, which kind it is taken to be, which account it
acts as, and each permission the release path needs, granted or not."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline import bootstrap
from pipeline.cli.common import CONFIG_OPTION, print_json, read_settings
from pipeline.model import PermissionCheck
from pipeline.services import check_line


@click.group()
def credentials() -> None:
    """The controller's credentials (BITBUCKET_TOKEN and BITBUCKET_EMAIL, HEROKU_API_KEY,
    BITBUCKET_WEBHOOK_SECRET)."""


@credentials.command("check")
@CONFIG_OPTION
@click.option("--webhook-url", default=None, help="Where the webhook points (default: webhooks.public_url).")
@click.option("--json", "as_json", is_flag=True, help='{"checks": [{"credential", "need", "ok", "detail"}]}')
def credentials_check(config_path: Path, webhook_url: str | None, as_json: bool) -> None:
    """Check the credentials in the environment (first day, or after rotating them): for each, which
    kind it is taken to be, which account it acts as, and each permission the release path needs,
    with what to do for any it lacks; then the webhook gets its secret again. Exit 1 when something
    the release path needs is missing. Recorded in the history; no secret is shown."""
    settings = read_settings(config_path)
    checks = bootstrap.unchecked_services(settings).check_credentials(webhook_url)
    missing = [c for c in checks if not c.ok]
    if as_json:
        print_json({"checks": [check_json(c) for c in checks]})
    else:
        for c in checks:
            click.echo(check_line(c))
    if missing:
        for c in missing:
            click.echo(f"error: {c.credential} cannot {c.need}: {c.detail}", err=True)
        sys.exit(1)


def check_json(check: PermissionCheck) -> dict[str, object]:
    return {"credential": check.credential, "need": check.need, "ok": check.ok, "detail": check.detail}
