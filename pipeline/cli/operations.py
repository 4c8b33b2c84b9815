"""Operations on environments and releases: ``freeze``, ``unfreeze``, ``unlock``, ``promote``,
``hotfix``, ``abort`` and ``rollback``."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from checks import DurationTooLong, parse_duration
from pipeline.cli.common import CONFIG_OPTION, ENV, LARGEST_ID, REASON, TIMEOUT, asked, services_for
from pipeline.errors import NotFound
from pipeline.model import RollbackState
from pipeline.services import SettleTimeout, frozen_text


def _until_in_range(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--until`` within what a clock holds: a duration of at most 100 years, a time before the year
    9999. What else it must be (a duration or an ISO time, in the future) is the service's to say."""
    if value is None:
        return None
    text = value.strip()
    try:
        parse_duration(text)
    except DurationTooLong as exc:
        raise click.BadParameter(f"{exc} (a freeze that long is no freeze: leave --until out)") from None
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return value
    if not 1 < moment.year < 9999:
        raise click.BadParameter("out of range: give a time after the year 1 and before the year 9999")
    return value


def _version_in_range(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--to``: a version number no larger than a release number can be."""
    if value is None:
        return None
    digits = value.strip().lower().removeprefix("v")
    if digits.isdecimal() and (len(digits) > 10 or int(digits) > LARGEST_ID):
        raise click.BadParameter(f"too large: a Heroku release version is at most {LARGEST_ID}")
    return value


@click.command()
@CONFIG_OPTION
@ENV
@REASON
@click.option(
    "--until",
    default=None,
    callback=_until_in_range,
    help="When it ends by itself: 2h, 3d, or a time such as 2026-12-24T18:00.",
)
def freeze(config_path: Path, env: str, reason: str, until: str | None) -> None:
    """Freeze ENV: nothing starts deploying to it until `pipeline unfreeze ENV` (or --until)."""
    services = services_for(config_path, connect=False)
    state = asked(lambda: services.freeze(env, reason, until))
    click.echo(frozen_text(state))


@click.command()
@CONFIG_OPTION
@ENV
@click.option("--reason", default="", help="Why (optional): it goes into the history with your name.")
def unfreeze(config_path: Path, env: str, reason: str) -> None:
    """Lift ENV's freeze: releases waiting for it move on the next pass."""
    services = services_for(config_path, connect=False)
    state = asked(lambda: services.unfreeze(env, reason))
    click.echo(f"{env} unfrozen." if state is not None else f"{env} was not frozen: nothing changed.")


@click.command()
@CONFIG_OPTION
@ENV
@REASON
def unlock(config_path: Path, env: str, reason: str) -> None:
    """Clear ENV's lock (a rollback locks it so the controller does not promote again by itself)."""
    services = services_for(config_path, connect=False)
    state = asked(lambda: services.unlock(env, reason))
    click.echo(f"{env} unlocked." if state is not None else f"{env} was not locked: nothing changed.")


@click.command()
@CONFIG_OPTION
@ENV
@click.option("--now", "now", is_flag=True, required=True, help="Start now, outside the window or a freeze.")
@REASON
def promote(config_path: Path, env: str, now: bool, reason: str) -> None:
    """Start the release waiting for ENV now, outside its deploy window or a freeze: a one-time
    override, recorded as such. The approval rules still hold, and a lock does not give way."""
    services = services_for(config_path)  # --now is required: click refuses (exit 2) without it
    release = asked(lambda: services.promote_now(env, reason))
    click.echo(f"release {release.id} {release.commit[:12]} {release.state}: {release.reason}")


@click.command()
@CONFIG_OPTION
@click.argument("release_id", metavar="RELEASE", type=click.IntRange(1, LARGEST_ID))
@REASON
def abort(config_path: Path, release_id: int, reason: str) -> None:
    """End RELEASE before it is promoted: said on its commit and declined in Bitbucket, recorded
    as aborted with your name and reason. Refused once it is promoting (roll back instead)."""
    services = services_for(config_path)
    try:
        release = asked(lambda: services.abort(release_id, reason))
    except NotFound as exc:
        raise click.ClickException(f"no release {release_id}: `pipeline history` lists them") from exc
    click.echo(f"release {release.id} {release.commit[:12]} {release.state}: {release.reason}")


@click.command()
@CONFIG_OPTION
@click.argument("branch")
def hotfix(config_path: Path, branch: str) -> None:
    """Take the head of hotfix BRANCH (source.hotfix_branches, e.g. hotfix/login) through staging and
    approval to production on its own, without what else is on the watched branch."""
    services = services_for(config_path)
    release = asked(lambda: services.start_hotfix(branch))
    click.echo(f"release {release.id} {release.commit[:12]} from {branch} {release.state}: {release.reason}")
    click.echo(
        "It needs the same staging checks and approval as any release; `pipeline status` follows it. "
        f"Once released, a pull request brings it back into {services.settings.source.branch}."
    )


@click.command()
@CONFIG_OPTION
@ENV
@click.option(
    "--to",
    "to",
    default=None,
    metavar="VERSION",
    callback=_version_in_range,
    help="The Heroku release to go back to (default: the one before).",
)
@REASON
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force", is_flag=True, help="Roll back to a release never verified there, or across a migration."
)
@click.option(
    "--timeout", type=TIMEOUT, default=600, show_default=True, help="Seconds to wait for it (at most a week)."
)
def rollback(
    config_path: Path, env: str, to: str | None, reason: str, yes: bool, force: bool, timeout: float
) -> None:
    """Roll ENV back to an earlier Heroku release: show what it takes out, ask, roll back, verify
    with ENV's checks, and lock ENV so the controller does not promote again until `pipeline unlock`."""
    services = services_for(config_path)

    def confirm(plan: Any) -> bool:
        return yes or click.confirm(f"Roll {plan.app} back to v{plan.target.version}?", default=False)

    try:
        done = asked(
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
