"""Passes and reading: ``tick``, ``status``, ``log``, ``history`` and ``show``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.cli.common import CONFIG_OPTION, COUNT, ID, TIMEOUT, asked, print_json, services_for
from pipeline.controller import PassReport
from pipeline.errors import NotFound, StoreLost
from pipeline.services import SettleTimeout

# --- Passes -------------------------------------------------------------------------------------


@click.command()
@CONFIG_OPTION
@click.option("--settle", is_flag=True, help="Run passes until nothing moves without a person or the clock.")
@click.option(
    "--timeout", type=TIMEOUT, default=600, show_default=True, help="Seconds, with --settle (at most a week)."
)
def tick(config_path: Path, settle: bool, timeout: float) -> None:
    """Run one pass (or, with --settle, passes until things settle) and exit."""
    services = services_for(config_path)
    printed: set[str] = set()

    def show(report: PassReport) -> None:
        for line in _pass_lines(report):
            if line not in printed:  # a settle repeats itself while it waits: say each thing once
                printed.add(line)
                click.echo(line, err=True)

    try:
        if not settle:
            show(services.tick())
            return
        services.settle(timeout, on_pass=show)
    except (SettleTimeout, StoreLost) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("Settled: nothing moves now without a person or the clock.", err=True)


def _pass_lines(report: PassReport) -> list[str]:
    lines = []
    if report.skipped:
        lines.append(f"pass skipped: {report.skipped}")
    if report.problem:
        lines.append(f"problem: {report.problem}")
    if report.detected is not None:
        lines.append(f"release {report.detected} detected")
    for r in report.releases:
        wait = f" - {r.wait.detail}" if r.wait else ""
        lines.append(f"release {r.release_id} {r.commit[:12]} {r.state}{wait}")
    if not lines:
        lines.append("nothing in flight")
    return lines


# --- Reading ------------------------------------------------------------------------------------


@click.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True)
def status(config_path: Path, as_json: bool) -> None:
    """What runs in each environment now, and what each release waits on."""
    services = services_for(config_path)
    state = services.status()
    if as_json:
        print_json(state)
        return
    click.echo(f"Pipeline {state['pipeline']}")
    for env in state["environments"]:
        live = env["release"]
        if live is None:
            line = env.get("error") or "nothing released"
        else:
            ours = f"release {live['release_id']} {live['commit'][:12]}" if live["commit"] else "not ours"
            approved = f", approved by {', '.join(live['approved_by'])}" if live["approved_by"] else ""
            line = f"v{live['version']} since {live['since']} ({ours}{approved})"
        click.echo(f"  {env['stage']:<11} {env['app']:<22} {line}")
        for note in _decided_lines(env):
            click.echo(f"  {'':<11} {note}")
    for r in state["rollbacks"]:
        click.echo(
            f"  rollback {r['id']} of {r['environment']} v{r['from']} -> v{r['to']} by {r['by']} "
            f"{r['state']}: {r['reason']}"
        )
    if not state["releases"] and not state["rollbacks"]:
        click.echo("Nothing in flight.")
    for r in state["releases"]:
        link = f" {r['pull_request']}" if r["pull_request"] else ""
        click.echo(f"  release {r['id']} {r['commit'][:12]} {r['state']}: {r['waiting_on']}{link}")


def _decided_lines(env: dict[str, Any]) -> list[str]:
    """What ``status`` says about a stage's lock, freeze, override, window and rollback."""
    lines = []
    if env.get("locked"):
        lock = env["locked"]
        lines.append(
            f"LOCKED since {lock['at']} by {lock['by']}: {lock['reason']} "
            f"(`pipeline unlock {env['stage']} --reason ...`)"
        )
    if env.get("frozen"):
        freeze = env["frozen"]
        until = f" until {freeze['until']}" if freeze["until"] else ""
        lines.append(f"FROZEN{until} since {freeze['at']} by {freeze['by']}: {freeze['reason']}")
    if env.get("override"):
        o = env["override"]
        lines.append(f"override for release {o['release']} by {o['by']}: {o['reason']}")
    if env.get("window"):
        w = env["window"]
        lines.append(
            "deploy window open"
            if w["open"]
            else f"deploy window closed; opens {w['opens']} ({w['timezone']})"
        )
    return lines


@click.command("log")
@CONFIG_OPTION
@click.option(
    "--environment", "environment", default=None, metavar="ENV", help="Only this environment's events."
)
@click.option("--limit", type=COUNT, default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def log_command(config_path: Path, environment: str | None, limit: int, as_json: bool) -> None:
    """Who did what, when and why, newest first: releases and environments (freezes, locks,
    overrides, rollbacks)."""
    services = services_for(config_path, connect=False)
    events = asked(lambda: services.log(environment, limit))
    if as_json:
        print_json(events)
        return
    for e in events:
        about = f"release {e['release']}" if e["release"] else ""
        where = f"{e['environment']}" if e["environment"] else ""
        subject = " / ".join(x for x in (where, about) if x)
        click.echo(f"{e['at']} {subject:<22} {e['kind']} by {e['actor']}: {e['reason']}")


@click.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="The history contract (see README).")
@click.option("--limit", type=COUNT, default=20, show_default=True)
def history(config_path: Path, as_json: bool, limit: int) -> None:
    """Releases, newest first: who released what, when, approved by whom, with which backup."""
    services = services_for(config_path, connect=False)
    rows = services.history(limit)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("No releases yet.")
    for r in rows:
        staging = f"staging v{r['staging']['release']}" if r["staging"] else "-"
        production = f"production v{r['production']['release']}" if r["production"] else "-"
        approvals = ",".join(a["user"] for a in r["approvals"]) or "-"
        backup = r["backup"]["name"] if r["backup"] else "-"
        click.echo(
            f"{r['id']:>4} {r['created_at']} {r['commit'][:12]} {r['state']:<20} {staging:<12} "
            f"{production:<15} approved:{approvals} backup:{backup}"
        )


@click.command()
@CONFIG_OPTION
@click.argument("release_id", type=ID)
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--details", "verbose", is_flag=True, help="Also print each event's evidence (outputs, policies)."
)
def show(config_path: Path, release_id: int, as_json: bool, verbose: bool) -> None:
    """One release: what is in it, every approval seen and why it counted or not, every event."""
    services = services_for(config_path, connect=False)
    try:
        detail = services.show(release_id)
    except NotFound as exc:
        raise click.ClickException(f"no release {release_id}: `pipeline history` lists them") from exc
    if as_json:
        print_json(detail)
        return
    click.echo(f"Release {detail['id']}  {detail['commit']}  {detail['state']}")
    click.echo(f"  {detail['reason']}")
    if detail["pull_request"]:
        click.echo(f"  pull request #{detail['pull_request']['id']} {detail['pull_request']['url']}")
    if detail["approvals_seen"]:
        click.echo(
            "  Approvals seen (each judged on the pull request and commit shown, under the policy digest):"
        )
    for a in detail["approvals_seen"]:
        mark = "counted" if a["counted"] else "not counted"
        what = "requested changes" if a["kind"] == "changes_requested" else "approved"
        where = f"#{a['pull_request']} {a['commit'][:12]} policy {a['policy_digest']}" if a["commit"] else ""
        click.echo(f"    {a['user']} {what} at {a['at']} ({where}): {mark} - {a['reason']}")
    click.echo("  Release notes:")
    for line in detail["notes"]["text"].splitlines():
        click.echo(f"    {line}" if line else "")
    click.echo("  Events:")
    for e in detail["events"]:
        move = f" [{e['from'] or ''} -> {e['to']}]" if e["from"] != e["to"] else ""
        refs = " ".join(f"{k}={v}" for k, v in e["refs"].items())
        click.echo(f"    {e['at']} {e['kind']}{move} by {e['actor']}: {e['reason']} {refs}".rstrip())
        if e["detail"] and verbose:
            for line in e["detail"].splitlines():
                click.echo(f"        | {line}")
