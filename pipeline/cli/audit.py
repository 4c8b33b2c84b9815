"""``pipeline audit``: the history's hash chain verified (``verify``) and the events exported with
their hashes for an auditor (``export``). Both read the store only: no secrets."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.cli.common import CONFIG_OPTION, asked, print_json, services_for
from pipeline.errors import ExternalError
from pipeline.services import ChainReport


@click.group()
def audit() -> None:
    """The history nobody can quietly rewrite: every event is hashed with the one before it."""


@audit.command("verify")
@CONFIG_OPTION
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='{"ok", "events", "head", "problem": null | {"event", "kind", ...}}',
)
def verify(config_path: Path, as_json: bool) -> None:
    """Walk the events' hash chain: exit 0 when it is whole (how many events, the head's hash); exit
    1 naming the first event edited, removed or inserted behind the controller's back."""
    services = services_for(config_path, connect=False)
    try:
        report = services.verify_history()
    except ExternalError as exc:  # the store cannot be read (or its chain's head is gone)
        raise click.ClickException(f"cannot read the history: {exc}") from exc
    if as_json:
        print_json(report.json())
    else:
        click.echo(report_line(report))
    if not report.ok:
        sys.exit(1)


def report_line(report: ChainReport) -> str:
    """What ``audit verify`` says, in one line."""
    if report.problem is None:
        return f"History whole: {_events(report.events)}, chain head {report.head or '(none yet)'}"
    p = report.problem
    return (
        f"History broken: event {p.event} {p.what} - {p.detail} "
        f"({_events(report.events)} before it whole; chain head {report.head or '(none)'})"
    )


def _events(count: int) -> str:
    return f"{count} event" if count == 1 else f"{count} events"


@audit.command("export")
@CONFIG_OPTION
@click.option(
    "--since",
    default=None,
    metavar="ISO-TIME|DURATION",
    help="Only events at or after it (7d, 2h, 2026-12-01).",
)
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file (default: standard output).",
)
def export(config_path: Path, since: str | None, fmt: str, out: Path | None) -> None:
    """Write the events oldest first with their hashes, one JSON object per line, for an auditor:
    each line without its "hash" is the canonical JSON its hash is taken of, and its "prev_hash" is
    the line before's "hash"."""
    services = services_for(config_path, connect=False)
    lines = asked(lambda: services.export_history(since))
    if out is None:
        for line in lines:
            click.echo(line)
        return
    with out.open("w", encoding="utf-8") as sink:
        written = 0
        for line in lines:
            sink.write(line + "\n")
            written += 1
    click.echo(f"{written} events written to {out}", err=True)
