"""The ``pipeline`` command: the ``main`` group, and every command added to it from the module
that holds its group of commands.

- ``common``: the options and helpers every command shares (``--config``, settings, services).
- ``config``: ``config check``.
- ``releases``: passes and reading: ``tick``, ``status``, ``log``, ``history``, ``show``.
- ``operations``: ``freeze``, ``unfreeze``, ``unlock``, ``promote``, ``hotfix``, ``rollback``.
- ``backups``, ``credentials``, ``webhooks``: ``backups drill``, ``credentials check``,
  ``webhooks install``.
- ``serve``: ``serve``, passes on a schedule until a signal.
- ``sandbox``: ``run``, ``demo`` and the ``sandbox`` group (local stand-ins).
"""

from __future__ import annotations

import logging

import click

from pipeline.cli import backups, config, credentials, operations, releases, sandbox, serve, webhooks


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log every step (INFO) to stderr.")
def main(verbose: bool) -> None:
    """Release controller: Bitbucket develop -> Heroku staging -> approval -> production."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for chatty in ("alembic", "apscheduler", "atlassian"):  # their INFO/DEBUG is about themselves
        logging.getLogger(chatty).setLevel(logging.WARNING)


for command in (
    config.config,
    releases.tick,
    serve.serve,
    backups.backups,
    credentials.credentials,
    webhooks.webhooks,
    releases.status,
    operations.freeze,
    operations.unfreeze,
    operations.unlock,
    operations.promote,
    operations.hotfix,
    operations.rollback,
    releases.log_command,
    releases.history,
    releases.show,
    sandbox.run,
    sandbox.demo_command,
    sandbox.sandbox,
):
    main.add_command(command)
