"""The ``pipeline`` command."""

from __future__ import annotations

import json
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from pipeline import bootstrap

DEFAULT_SANDBOX_DIR = Path(".pipeline") / "sandbox"


@click.group()
def main() -> None:
    """Release controller: Bitbucket develop -> Heroku staging -> approval -> production."""


@main.group()
def sandbox() -> None:
    """Local stand-ins for Bitbucket Cloud and Heroku (no accounts needed)."""


@sandbox.command("up")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object describing the sandbox first.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_SANDBOX_DIR,
    show_default=True,
    help="Where the stand-ins keep their state across restarts.",
)
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
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

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
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_SANDBOX_DIR,
    show_default=True,
    help="The state dir of the running sandbox.",
)
def sandbox_env(state_dir: Path) -> None:
    """Print shell `export` lines pointing at the running sandbox.

    BITBUCKET_URL, BITBUCKET_TOKEN (the controller's), HEROKU_API_URL, HEROKU_API_KEY and
    HEROKU_DATA_API_URL, plus SANDBOX_TOKEN_<USER> for each seeded Bitbucket user. Use it as
    `eval "$(pipeline sandbox env)"`.
    """
    info = bootstrap.running_sandbox(state_dir)
    if info is None:
        raise click.ClickException(
            f"no sandbox is running with state dir {state_dir}: start one with `make run` "
            f"or `pipeline sandbox up --state-dir {state_dir}`"
        )
    exports = dict(info["env"])
    for user, token in info["bitbucket"]["users"].items():
        exports[f"SANDBOX_TOKEN_{user.upper()}"] = token
    for key, value in exports.items():
        click.echo(f"export {key}={shlex.quote(value)}")


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
