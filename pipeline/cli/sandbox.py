"""The sandbox: ``run`` (the service, on the sandbox without credentials), ``demo`` (the whole
story on a fresh sandbox) and the ``sandbox`` group (local stand-ins for Bitbucket and Heroku)."""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pipeline import bootstrap, demo
from pipeline.cli.common import CONFIG_OPTION, ID, build_services, read_settings, services_for
from pipeline.cli.serve import StopSignal, serve_until_stopped
from pipeline.errors import ConfigInvalid
from pipeline.scheduler import Scheduler
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


# --- make run, make demo ------------------------------------------------------------------------


@click.command()
@CONFIG_OPTION
@state_dir_option("Where the sandbox keeps its state (sandbox mode only).")
def run(config_path: Path, state_dir: Path) -> None:
    """The service: on the real Bitbucket and Heroku when BITBUCKET_TOKEN and HEROKU_API_KEY are
    set; otherwise on the local sandbox, with one demo change merged so something flows."""
    settings = read_settings(config_path, require_secrets=False)
    if not settings.sandbox:
        serve_until_stopped(services_for(config_path))
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
        services = build_services(read_settings(config_path, overrides=overrides))

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

        serve_until_stopped(services, ready=merge_a_change)
    finally:
        box.stop()


@click.command("demo")
@CONFIG_OPTION
def demo_command(config_path: Path) -> None:
    """Tell the whole story on a fresh sandbox and print the timeline: a good merge goes to
    production; a merge that breaks the health check stops at staging; a release whose production
    check fails is rolled back."""
    read_settings(config_path, require_secrets=False)  # exit 2 on a bad configuration before anything starts
    with tempfile.TemporaryDirectory(prefix="pipeline-demo-") as state_dir:
        try:
            demo.tell_story(config_path, Path(state_dir), say=click.echo)
        except ConfigInvalid as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            sys.exit(2)


# --- The sandbox --------------------------------------------------------------------------------


@click.group()
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
@click.option("--bitbucket-web-port", type=click.IntRange(0, 65535), default=0, help="0 = a free port.")
@click.option(
    "--bitbucket-merge",
    type=click.Choice(["sync", "async"]),
    default="sync",
    show_default=True,
    help="async: a merge answers 202 and a task that stays PENDING a moment, as Bitbucket may.",
)
def sandbox_up(
    as_json: bool,
    state_dir: Path,
    bitbucket_port: int,
    heroku_port: int,
    heroku_data_port: int,
    heroku_rate_limit: int,
    bitbucket_rate_limit: int,
    bitbucket_web_port: int,
    bitbucket_merge: str,
) -> None:
    """Start the stand-ins and run until SIGINT or SIGTERM, then stop every process started."""
    ports = {
        "bitbucket": bitbucket_port,
        "bitbucket-web": bitbucket_web_port,
        "heroku": heroku_port,
        "heroku-data": heroku_data_port,
    }
    stop = StopSignal()

    box = bootstrap.sandbox(
        state_dir,
        ports={k: v for k, v in ports.items() if v},
        heroku_rate_limit=heroku_rate_limit,
        bitbucket_rate_limit=bitbucket_rate_limit,
        bitbucket_merge=bitbucket_merge,
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
@click.option("--pull-request", type=ID, default=None, help="Default: the open release pull request.")
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
