"""The ``pipeline`` command: the ``main`` group, and every command added to it from the module
that holds its group of commands.

- ``common``: the options and helpers every command shares (``--config``, settings, services).
- ``config``: ``config check``.
- ``releases``: passes and reading: ``tick``, ``status``, ``log``, ``history``, ``show``.
- ``operations``: ``freeze``, ``unfreeze``, ``unlock``, ``promote``, ``hotfix``, ``rollback``.
- ``backups``, ``credentials``, ``webhooks``: ``backups drill``, ``credentials check``,
  ``webhooks install``.
- ``audit``: ``audit verify`` and ``audit export``, the history's hash chain.
- ``serve``: ``serve``, passes on a schedule until a signal.
- ``sandbox``: ``run``, ``demo`` and the ``sandbox`` group (local stand-ins).
"""

from __future__ import annotations

import logging

import click

from pipeline.cli import audit, backups, config, credentials, operations, releases, sandbox, serve, webhooks


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


main.add_command(config.config)
main.add_command(releases.tick)
main.add_command(releases.status)
main.add_command(releases.log_command)
main.add_command(releases.history)
main.add_command(releases.show)
main.add_command(operations.freeze)
main.add_command(operations.unfreeze)
main.add_command(operations.unlock)
main.add_command(operations.promote)
main.add_command(operations.hotfix)
main.add_command(operations.abort)
main.add_command(operations.rollback)
main.add_command(backups.backups)
main.add_command(credentials.credentials)
main.add_command(webhooks.webhooks)
main.add_command(audit.audit)
main.add_command(serve.serve)
main.add_command(sandbox.run)
main.add_command(sandbox.demo_command)
main.add_command(sandbox.sandbox)
