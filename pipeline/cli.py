"""The ``pipeline`` command."""

from __future__ import annotations

import json
import logging
import re
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml

from pipeline import bootstrap, demo
from pipeline.config import Settings, describe, missing_secrets, missing_webhook_secret
from pipeline.controller import PassReport
from pipeline.errors import BadInput, ConfigInvalid, ExternalError, NotFound, Refused
from pipeline.model import RollbackState
from pipeline.scheduler import Scheduler
from pipeline.services import Services, SettleTimeout, frozen_text
from pipeline.web.app import WEBHOOK_PATH
from pipeline.web.server import WebServer

DEFAULT_SANDBOX_DIR = Path(".pipeline") / "sandbox"


def state_dir_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--state-dir``: where a sandbox keeps its state (the same default everywhere)."""
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_SANDBOX_DIR,
        show_default=True,
        help=help,
    )


CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("pipeline.yml"),
    show_default=True,
    help="pipeline.yml; environments/ is read from beside it.",
)


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


def _settings(
    config_path: Path, *, require_secrets: bool = True, overrides: dict[str, str] | None = None
) -> Settings:
    """Settings, or exit 2 with one line per problem (file, key, what is expected)."""
    try:
        return bootstrap.settings(config_path, require_secrets=require_secrets, overrides=overrides)
    except ConfigInvalid as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)


def _services(config_path: Path, *, connect: bool = True) -> Services:
    settings = _settings(config_path, require_secrets=connect)
    return _connect(settings, connect=connect)


def _connect(settings: Settings, *, connect: bool = True) -> Services:
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


def _json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


# --- Configuration ------------------------------------------------------------------------------


@main.group()
def config() -> None:
    """The configuration: pipeline.yml, environments/*.yml and the environment."""


@config.command("check")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the resolved plan as JSON.")
def config_check(config_path: Path, as_json: bool) -> None:
    """Validate everything and print the resolved plan (secrets redacted); exit 2 on any problem."""
    settings = _settings(config_path, require_secrets=False)
    plan = describe(settings)
    missing = missing_secrets(settings)
    if as_json:
        _json(plan)
    else:
        click.echo(yaml.safe_dump(plan, sort_keys=False).rstrip())
    if missing:
        for problem in missing:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    if not as_json:
        click.echo("configuration OK", err=True)


# --- Passes -------------------------------------------------------------------------------------


@main.command()
@CONFIG_OPTION
@click.option("--settle", is_flag=True, help="Run passes until nothing moves without a person or the clock.")
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=600, show_default=True, help="Seconds, with --settle."
)
def tick(config_path: Path, settle: bool, timeout: float) -> None:
    """Run one pass (or, with --settle, passes until things settle) and exit."""
    services = _services(config_path)
    printed: set[str] = set()

    def show(report: PassReport) -> None:
        for line in _pass_lines(report):
            if line not in printed:  # a settle repeats itself while it waits: say each thing once
                printed.add(line)
                click.echo(line, err=True)

    if not settle:
        show(services.tick())
        return
    try:
        services.settle(timeout, on_pass=show)
    except SettleTimeout as exc:
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


@main.command()
@CONFIG_OPTION
def serve(config_path: Path) -> None:
    """Run passes every schedule.poll_interval until SIGINT or SIGTERM."""
    services = _services(config_path)
    _serve(services)


def _serve(services: Services, ready: Callable[[Scheduler, WebServer | None], None] | None = None) -> None:
    """Passes on the scheduler and, with ``webhooks:``, the webhook receiver, until a signal.
    ``ready(scheduler, server)`` runs in a thread of its own once both are up."""
    settings = services.settings
    for problem in missing_webhook_secret(settings):
        click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    stop = _StopSignal()
    interval = settings.schedule.poll_interval
    scheduler = Scheduler(lambda detect: services.tick(detect=detect), interval)
    try:
        server = bootstrap.web_server(services, scheduler)
    except OSError as exc:
        hooks = settings.webhooks
        where = f"{hooks.host}:{hooks.port}" if hooks else ""
        raise click.ClickException(
            f"cannot take webhooks on {where}: {exc}; set webhooks.port (or PIPELINE_WEBHOOK_PORT) "
            "to a free port, or 0 for any"
        ) from exc
    click.echo(
        f"Serving pipeline {settings.name}: a pass every {interval.total_seconds():g}s"
        + (f", and at once on each Bitbucket webhook to {server.url}{WEBHOOK_PATH}" if server else "")
        + "; SIGINT or SIGTERM stops after the running pass.",
        err=True,
    )
    if server is not None:
        server.start()
    if ready is not None:
        threading.Thread(target=ready, args=(scheduler, server), daemon=True).start()
    scheduler.start()
    try:
        stop.wait()
    finally:
        if server is not None:
            server.stop()
        scheduler.shutdown()
    click.echo("Stopped.", err=True)


class _StopSignal:
    """SIGINT or SIGTERM, asking a long-running command to stop.

    The handler only sets a flag and the main thread polls it: a handler that takes a lock (as
    ``threading.Event.set`` does) can deadlock with the main thread interrupted inside that very
    lock (in ``Event.wait``), and the process would then never stop."""

    def __init__(self) -> None:
        self.received = False
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.received = True

    def wait(self) -> None:
        while not self.received:
            time.sleep(0.2)


# --- Backups and credentials --------------------------------------------------------------------


@main.group()
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

    services = _services(config_path)
    context: Any = invoke.Context()
    if host is not None:
        import fabric

        context = fabric.Connection(host)
    report = _refusals(lambda: services.restore_drill(context, backup, keep=keep))
    if as_json:
        _json(
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


@main.group()
def credentials() -> None:
    """The controller's credentials (BITBUCKET_TOKEN, HEROKU_API_KEY, BITBUCKET_WEBHOOK_SECRET)."""


@credentials.command("check")
@CONFIG_OPTION
@click.option("--webhook-url", default=None, help="Where the webhook points (default: webhooks.public_url).")
def credentials_check(config_path: Path, webhook_url: str | None) -> None:
    """Check the credentials in the environment (after rotating them): each works and reaches what
    the controller needs; the webhook gets the secret again. Recorded in the history, never shown."""
    services = _services(config_path)
    try:
        lines = services.rotate_credentials(webhook_url)
    except ExternalError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in lines:
        click.echo(line)


# --- Webhooks -----------------------------------------------------------------------------------


@main.group()
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
    settings = _settings(config_path)
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
    services = _connect(settings)
    try:
        hook, outcome = services.install_webhook(target)
    except ExternalError as exc:
        raise click.ClickException(f"could not register the webhook: {exc}") from exc
    src = settings.source
    click.echo(
        f"Webhook {outcome} on {src.workspace}/{src.repository}: {hook.url} ({hook.uuid}), signed with "
        f"BITBUCKET_WEBHOOK_SECRET, for {len(hook.events)} events: {', '.join(hook.events)}"
    )


# --- Reading ------------------------------------------------------------------------------------


@main.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True)
def status(config_path: Path, as_json: bool) -> None:
    """What runs in each environment now, and what each release waits on."""
    services = _services(config_path)
    state = services.status()
    if as_json:
        _json(state)
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


def _refusals(run: Callable[[], Any]) -> Any:
    """Run a request, turning our refusals into exits: bad input 2 (nothing changed), refused 1."""
    try:
        return run()
    except BadInput as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Refused as exc:
        raise click.ClickException(str(exc)) from exc


REASON = click.option("--reason", required=True, help="Why: it goes into the history with your name.")
ENV = click.argument("env", metavar="ENV")


@main.command()
@CONFIG_OPTION
@ENV
@REASON
@click.option(
    "--until", default=None, help="When it ends by itself: 2h, 3d, or a time such as 2026-12-24T18:00."
)
def freeze(config_path: Path, env: str, reason: str, until: str | None) -> None:
    """Freeze ENV: nothing starts deploying to it until `pipeline unfreeze ENV` (or --until)."""
    services = _services(config_path, connect=False)
    state = _refusals(lambda: services.freeze(env, reason, until))
    click.echo(frozen_text(state))


@main.command()
@CONFIG_OPTION
@ENV
@click.option("--reason", default="", help="Why (optional): it goes into the history with your name.")
def unfreeze(config_path: Path, env: str, reason: str) -> None:
    """Lift ENV's freeze: releases waiting for it move on the next pass."""
    services = _services(config_path, connect=False)
    state = _refusals(lambda: services.unfreeze(env, reason))
    click.echo(f"{env} unfrozen." if state is not None else f"{env} was not frozen: nothing changed.")


@main.command()
@CONFIG_OPTION
@ENV
@REASON
def unlock(config_path: Path, env: str, reason: str) -> None:
    """Clear ENV's lock (a rollback locks it so the controller does not promote again by itself)."""
    services = _services(config_path, connect=False)
    state = _refusals(lambda: services.unlock(env, reason))
    click.echo(f"{env} unlocked." if state is not None else f"{env} was not locked: nothing changed.")


@main.command()
@CONFIG_OPTION
@ENV
@click.option("--now", "now", is_flag=True, required=True, help="Start now, outside the window or a freeze.")
@REASON
def promote(config_path: Path, env: str, now: bool, reason: str) -> None:
    """Start the release waiting for ENV now, outside its deploy window or a freeze: a one-time
    override, recorded as such. The approval rules still hold, and a lock does not give way."""
    services = _services(config_path)  # --now is required: click refuses (exit 2) without it
    release = _refusals(lambda: services.promote_now(env, reason))
    click.echo(f"release {release.id} {release.commit[:12]} {release.state}: {release.reason}")


@main.command()
@CONFIG_OPTION
@click.argument("branch")
def hotfix(config_path: Path, branch: str) -> None:
    """Take the head of hotfix BRANCH (source.hotfix_branches, e.g. hotfix/login) through staging and
    approval to production on its own, without what else is on the watched branch."""
    services = _services(config_path)
    release = _refusals(lambda: services.start_hotfix(branch))
    click.echo(f"release {release.id} {release.commit[:12]} from {branch} {release.state}: {release.reason}")
    click.echo(
        "It needs the same staging checks and approval as any release; `pipeline status` follows it. "
        f"Once released, a pull request brings it back into {services.settings.source.branch}."
    )


@main.command()
@CONFIG_OPTION
@ENV
@click.option(
    "--to",
    "to",
    default=None,
    metavar="VERSION",
    help="The Heroku release to go back to (default: the one before).",
)
@REASON
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force", is_flag=True, help="Roll back to a release never verified there, or across a migration."
)
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=600, show_default=True, help="Seconds to wait for it."
)
def rollback(
    config_path: Path, env: str, to: str | None, reason: str, yes: bool, force: bool, timeout: float
) -> None:
    """Roll ENV back to an earlier Heroku release: show what it takes out, ask, roll back, verify
    with ENV's checks, and lock ENV so the controller does not promote again until `pipeline unlock`."""
    services = _services(config_path)

    def confirm(plan: Any) -> bool:
        return yes or click.confirm(f"Roll {plan.app} back to v{plan.target.version}?", default=False)

    try:
        done = _refusals(
            lambda: services.roll_back(
                env, to, reason, force=force, confirm=confirm, say=click.echo, timeout=timeout
            )
        )
    except SettleTimeout as exc:
        raise click.ClickException(f"{exc}; `pipeline log --environment {env}` follows it") from exc
    if done is None:
        sys.exit(1)
    click.echo(f"{env} stays locked until `pipeline unlock {env} --reason ...`.")
    if done.state != RollbackState.VERIFIED:
        sys.exit(1)


@main.command("log")
@CONFIG_OPTION
@click.option(
    "--environment", "environment", default=None, metavar="ENV", help="Only this environment's events."
)
@click.option("--limit", type=click.IntRange(1), default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def log_command(config_path: Path, environment: str | None, limit: int, as_json: bool) -> None:
    """Who did what, when and why, newest first: releases and environments (freezes, locks,
    overrides, rollbacks)."""
    services = _services(config_path, connect=False)
    events = _refusals(lambda: services.log(environment, limit))
    if as_json:
        _json(events)
        return
    for e in events:
        about = f"release {e['release']}" if e["release"] else ""
        where = f"{e['environment']}" if e["environment"] else ""
        subject = " / ".join(x for x in (where, about) if x)
        click.echo(f"{e['at']} {subject:<22} {e['kind']} by {e['actor']}: {e['reason']}")


@main.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="The history contract (see README).")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
def history(config_path: Path, as_json: bool, limit: int) -> None:
    """Releases, newest first: who released what, when, approved by whom, with which backup."""
    services = _services(config_path, connect=False)
    rows = services.history(limit)
    if as_json:
        _json(rows)
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


@main.command()
@CONFIG_OPTION
@click.argument("release_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--details", "verbose", is_flag=True, help="Also print each event's evidence (outputs, policies)."
)
def show(config_path: Path, release_id: int, as_json: bool, verbose: bool) -> None:
    """One release: what is in it, every approval seen and why it counted or not, every event."""
    services = _services(config_path, connect=False)
    try:
        detail = services.show(release_id)
    except NotFound as exc:
        raise click.ClickException(f"no release {release_id}: `pipeline history` lists them") from exc
    if as_json:
        _json(detail)
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


# --- make run, make demo ------------------------------------------------------------------------


@main.command()
@CONFIG_OPTION
@state_dir_option("Where the sandbox keeps its state (sandbox mode only).")
def run(config_path: Path, state_dir: Path) -> None:
    """The service: on the real Bitbucket and Heroku when BITBUCKET_TOKEN and HEROKU_API_KEY are
    set; otherwise on the local sandbox, with one demo change merged so something flows."""
    settings = _settings(config_path, require_secrets=False)
    if not settings.sandbox:
        _serve(_services(config_path))
        return
    click.echo(
        "BITBUCKET_TOKEN and HEROKU_API_KEY are not set: running on the local sandbox "
        "(stand-ins for Bitbucket and Heroku; nothing real is touched).",
        err=True,
    )
    box = bootstrap.sandbox(state_dir)
    try:
        box.start()
    except OSError as exc:
        raise click.ClickException(f"could not start the sandbox: {exc}") from exc
    try:
        info = box.info()
        _describe(info, err=True)
        overrides = dict(info["env"]) | {"PIPELINE_DATABASE_URL": bootstrap.sandbox_database_url(state_dir)}
        overrides.setdefault("PIPELINE_WEBHOOK_PORT", "0")  # any free port; the hook is told which
        services = _connect(_settings(config_path, overrides=overrides))

        def merge_a_change(scheduler: Scheduler, server: WebServer | None) -> None:
            if server is not None:  # the sandbox's Bitbucket posts its webhooks to this serve
                services.install_webhook(f"{server.url}{WEBHOOK_PATH}")
            people = demo.People(info)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            merged = people.merge_change(
                f"Demo change {stamp}", {"DEMO.md": f"Changed at {stamp}\n".encode()}
            )
            if server is None:
                scheduler.run_now(look=True)  # as a webhook would: do not wait a poll for the merge
            poll = services.settings.schedule.poll_interval.total_seconds()
            exe = "pipeline"
            where = f" --state-dir {state_dir}" if state_dir != DEFAULT_SANDBOX_DIR else ""
            env_line = f'eval "$(.venv/bin/{exe} sandbox env{where})"'
            click.echo(
                "\n".join(
                    [
                        "",
                        f"Merged a demo change into develop as dev (pull request #{merged.pull_request}, "
                        f"commit {merged.commit[:12]}) and reported its `tests` build green, as CI would.",
                        "It goes to staging now. Watch it, in another shell:",
                        f"    {env_line} && .venv/bin/{exe} status",
                        "Once it waits for approval, approve it as the Product Owner:",
                        f"    .venv/bin/{exe} sandbox approve --as po{where}",
                        "(the sandbox's Bitbucket tells the controller at once, by webhook)"
                        if server is not None
                        else f"(the controller looks again within {poll:g}s)",
                        f"History: .venv/bin/{exe} history (after the eval above).  Ctrl-C stops everything.",
                        "",
                    ]
                ),
                err=True,
            )

        _serve(services, ready=merge_a_change)
    finally:
        box.stop()


@main.command("demo")
@CONFIG_OPTION
def demo_command(config_path: Path) -> None:
    """Tell the whole story on a fresh sandbox and print the timeline: a good merge goes to
    production; a merge that breaks the health check stops at staging; a release whose production
    check fails is rolled back."""
    _settings(config_path, require_secrets=False)  # exit 2 on a bad configuration before anything starts
    with tempfile.TemporaryDirectory(prefix="pipeline-demo-") as state_dir:
        try:
            demo.tell_story(config_path, Path(state_dir), say=click.echo)
        except ConfigInvalid as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            sys.exit(2)


# --- The sandbox --------------------------------------------------------------------------------


@main.group()
def sandbox() -> None:
    """Local stand-ins for Bitbucket Cloud and Heroku (no accounts needed)."""


@sandbox.command("up")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object describing the sandbox first.")
@state_dir_option("Where the stand-ins keep their state across restarts.")
@click.option("--bitbucket-port", type=click.IntRange(0, 65535), default=0, help="0 = a free port.")
@click.option("--heroku-port", type=click.IntRange(0, 65535), default=0, help="0 = a free port.")
@click.option("--heroku-data-port", type=click.IntRange(0, 65535), default=0, help="0 = a free port.")
@click.option(
    "--heroku-rate-limit",
    type=click.IntRange(1),
    default=4500,
    show_default=True,
    help="Requests the Heroku account may make before 429 (refills ~75 a minute).",
)
@click.option(
    "--bitbucket-rate-limit",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Requests per user and rolling hour on /2.0/repositories/* before 429.",
)
def sandbox_up(
    as_json: bool,
    state_dir: Path,
    bitbucket_port: int,
    heroku_port: int,
    heroku_data_port: int,
    heroku_rate_limit: int,
    bitbucket_rate_limit: int,
) -> None:
    """Start the stand-ins and run until SIGINT or SIGTERM, then stop every process started."""
    ports = {"bitbucket": bitbucket_port, "heroku": heroku_port, "heroku-data": heroku_data_port}
    stop = _StopSignal()

    box = bootstrap.sandbox(
        state_dir,
        ports={k: v for k, v in ports.items() if v},
        heroku_rate_limit=heroku_rate_limit,
        bitbucket_rate_limit=bitbucket_rate_limit,
    )
    try:
        box.start()
    except OSError as exc:
        raise click.ClickException(f"could not start the sandbox: {exc}") from exc
    try:
        info = box.info()
        if as_json:
            click.echo(json.dumps(info))
            sys.stdout.flush()
        _describe(info, err=as_json)
        stop.wait()
    finally:
        click.echo("Stopping the sandbox and every process it started...", err=True)
        box.stop()


@sandbox.command("env")
@state_dir_option("The state dir of the running sandbox.")
def sandbox_env(state_dir: Path) -> None:
    """Print shell `export` lines pointing at the running sandbox.

    BITBUCKET_URL, BITBUCKET_TOKEN (the controller's), HEROKU_API_URL, HEROKU_API_KEY and
    HEROKU_DATA_API_URL, PIPELINE_DATABASE_URL (the history `make run` keeps beside the sandbox),
    plus SANDBOX_TOKEN_<USER> for each seeded Bitbucket user. Use it as
    `eval "$(pipeline sandbox env)"`.
    """
    info = bootstrap.running_sandbox(state_dir)
    if info is None:
        raise click.ClickException(
            f"no sandbox is running with state dir {state_dir}: start one with `make run` "
            f"or `pipeline sandbox up --state-dir {state_dir}`"
        )
    exports = dict(info["env"]) | {"PIPELINE_DATABASE_URL": bootstrap.sandbox_database_url(state_dir)}
    for user, token in info["bitbucket"]["users"].items():
        exports[f"SANDBOX_TOKEN_{user.upper()}"] = token
    for key, value in exports.items():
        click.echo(f"export {key}={shlex.quote(value)}")


@sandbox.command("approve")
@click.option("--as", "user", default="po", show_default=True, help="The sandbox user who approves.")
@click.option("--pull-request", type=int, default=None, help="Default: the open release pull request.")
@state_dir_option("The state dir of the running sandbox.")
def sandbox_approve(user: str, pull_request: int | None, state_dir: Path) -> None:
    """Approve a pull request in the sandbox's Bitbucket as one of its users (the Product Owner by
    default), as they would in Bitbucket's web page."""
    info = bootstrap.running_sandbox(state_dir)
    if info is None:
        raise click.ClickException(
            f"no sandbox is running with state dir {state_dir}: start one with `make run`"
        )
    try:
        approved = demo.People(info).approve(pull_request, user=user)
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{user} approved pull request #{approved}; the controller sees it at once by webhook "
        "(`make run` registers one), else on its next pass."
    )


def _describe(info: dict[str, Any], *, err: bool) -> None:
    bb, hk = info["bitbucket"], info["heroku"]
    lines = [
        "Sandbox up (local stand-ins; nothing here talks to the real Bitbucket or Heroku).",
        f"  Bitbucket Cloud   {bb['url']}  (repository {bb['workspace']}/{bb['repository']})",
        f"  Heroku Platform   {hk['url']}",
        f"  Heroku Data       {hk['data_url']}",
        *(f"  {stage:<17} {app} at {hk['web_urls'][stage]}" for stage, app in hk["apps"].items()),
        f"  databases         {info['databases']}",
        f"  state             {info['state_dir']}",
        "  users (Bitbucket API tokens):",
        *(f"    {user:<10} {token}" for user, token in bb["users"].items()),
        "  In another shell, point the release controller and curl at it with:",
        f'    eval "$(pipeline sandbox env --state-dir {info["state_dir"]})"',
        "Ctrl-C stops it.",
    ]
    click.echo("\n".join(lines), err=err)


if __name__ == "__main__":
    main()
