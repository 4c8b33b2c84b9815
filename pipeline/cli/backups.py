"""``pipeline backups drill``: the restore drill of production's backups."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pipeline.cli.common import CONFIG_OPTION, asked, print_json, services_for


@click.group()
def backups() -> None:
    """Production's database backups."""


@backups.command("drill")
@CONFIG_OPTION
@click.option(
    "--backup", "backup", default=None, help="The backup (b012, its number or uuid); default the newest."
)
@click.option("--host", default=None, help="Run it on this verification host over SSH (user@host), not here.")
@click.option("--keep", is_flag=True, help="Keep the scratch database (it is dropped otherwise).")
@click.option("--json", "as_json", is_flag=True)
def backups_drill(config_path: Path, backup: str | None, host: str | None, keep: bool, as_json: bool) -> None:
    """Restore a production backup into a scratch database and check it (the restore drill); the
    outcome goes into the history. Exit 1 when it fails."""
    import invoke

    services = services_for(config_path)
    context: Any = invoke.Context()
    if host is not None:
        import fabric

        context = fabric.Connection(host)
    report = asked(lambda: services.restore_drill(context, backup, keep=keep))
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "where": report.where,
                "database": report.database,
                "tables": dict(report.tables),
                "checks": [{"query": c.query, "ok": c.ok, "returned": c.returned} for c in report.checks],
                "problems": list(report.problems),
                "summary": report.summary(),
            }
        )
    else:
        for line in report.lines():
            click.echo(line)
    if not report.ok:
        sys.exit(1)
