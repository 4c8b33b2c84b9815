"""The release controller's runbooks: ops procedures as Fabric tasks.

Run from the repository root: ``.venv/bin/fab -r runbooks --list``; ``runbooks/README.md`` says how
arguments are passed, and each task has a page saying when to use it, what it does and how to
check the result. Every task is thin: it builds the settings and services through
``pipeline.bootstrap`` exactly as the ``pipeline`` command does (``--config``, default
``pipeline.yml``), asks one service, and prints what happened. The exit status is the command's:
2 for bad input (``error: ...``, nothing changed), 1 for a refusal or a failure.

Only ``restore-drill`` uses the context Fabric hands a task: with ``-H user@host`` it is a
``fabric.Connection`` and the drill's commands run on that host over SSH; without, a local
``invoke.Context``. The others act on Bitbucket, Heroku and the history from here and refuse
``-H`` (they would run once per host).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import fabric
from fabric import task
from invoke import Context, Exit

from pipeline import bootstrap
from pipeline.config import Settings
from pipeline.errors import BadInput, ConfigInvalid, ExternalError, Refused
from pipeline.model import RollbackState
from pipeline.rollbacks import RollbackPlan
from pipeline.services import Services, SettleTimeout, check_line, frozen_text

CONFIG = "pipeline.yml"
BAD_INPUT = 2
REFUSED = 1
CONFIG_HELP = "pipeline.yml (environments/ is read from beside it); default pipeline.yml"
REASON_HELP = "why: it goes into the history with your name (PIPELINE_ACTOR)"

T = TypeVar("T")


# --- What every task shares -----------------------------------------------------------------------


def _services(config: str, *, connect: bool = True) -> Services:
    """Settings and services as the ``pipeline`` command builds them (``connect=False``: the store
    only, as its freeze, unfreeze and unlock do). A configuration problem exits 2, one ``error:``
    line each; a credential refused or a service unreachable at start exits 1."""
    settings = _settings(config, require_secrets=connect)
    try:
        return bootstrap.services(settings, connect=connect)
    except ConfigInvalid as exc:
        raise Exit("\n".join(f"error: {problem}" for problem in exc.problems), BAD_INPUT) from exc
    except ExternalError as exc:
        raise Exit(f"error: cannot start: {exc}", REFUSED) from exc


def _settings(config: str, *, require_secrets: bool = True) -> Settings:
    """The settings as the ``pipeline`` command reads them; a problem exits 2, one line each."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return bootstrap.settings(Path(config), require_secrets=require_secrets)
    except ConfigInvalid as exc:
        raise Exit("\n".join(f"error: {problem}" for problem in exc.problems), BAD_INPUT) from exc


def _asked(request: Callable[[], T]) -> T:
    """Run a request of a service; bad input exits 2 (nothing changed), a refusal 1, and so does
    Bitbucket or Heroku refusing or failing (its message names the service, never a secret)."""
    try:
        return request()
    except BadInput as exc:
        raise Exit(f"error: {exc}", BAD_INPUT) from exc
    except (Refused, ExternalError) as exc:
        raise Exit(f"error: {exc}", REFUSED) from exc


def _here(c: Context, name: str) -> None:
    """Refuse ``-H`` for a task that acts from here: it would act once per host."""
    if isinstance(c, fabric.Connection):
        raise Exit(
            f"error: -H: {name} acts on Bitbucket, Heroku and the history from here; only "
            "restore-drill runs on a host. Nothing was changed.",
            BAD_INPUT,
        )


def _confirmed(question: str) -> bool:
    """Ask on the terminal; only y or yes is a yes (end of input is a no)."""
    try:
        answer = input(f"{question} [y/N]: ")
    except EOFError:
        print()
        return False
    return answer.strip().lower() in ("y", "yes")


# --- Rollbacks and locks ------------------------------------------------------------------------


@task(
    help={
        "env": "the environment (stage) to roll back, e.g. production",
        "to": "the Heroku release to go back to, 12 or v12 (default: the one before)",
        "reason": REASON_HELP,
        "yes": "do not ask for confirmation",
        "force": "roll back to a release never verified there, or across a migration",
        "timeout": "seconds to wait for the rollback to be carried out (default 600)",
        "config": CONFIG_HELP,
    }
)
def rollback(
    c: Context,
    env: str,
    to: str | None = None,
    reason: str = "",
    yes: bool = False,
    force: bool = False,
    timeout: float = 600.0,
    config: str = CONFIG,
) -> None:
    """Roll ENV back to an earlier release: plan, ask, roll back, verify, lock ENV."""
    _here(c, "rollback")
    services = _services(config)

    def confirm(plan: RollbackPlan) -> bool:
        return yes or _confirmed(f"Roll {plan.app} back to v{plan.target.version}?")

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        done = _asked(
            lambda: services.roll_back(
                env, to, reason, force=force, confirm=confirm, say=say, timeout=timeout
            )
        )
    except SettleTimeout as exc:
        raise Exit(f"error: {exc}; `pipeline log --environment {env}` follows it", REFUSED) from exc
    if done is None:
        raise Exit(code=REFUSED)
    print(f"{env} stays locked until `fab -r runbooks unlock {env} --reason ...`.")
    if done.state != RollbackState.VERIFIED:
        raise Exit(code=REFUSED)


@task(help={"env": "the environment (stage) to unlock", "reason": REASON_HELP, "config": CONFIG_HELP})
def unlock(c: Context, env: str, reason: str = "", config: str = CONFIG) -> None:
    """Clear ENV's lock (left by a rollback) so the controller promotes to it again."""
    _here(c, "unlock")
    services = _services(config, connect=False)
    state = _asked(lambda: services.unlock(env, reason))
    print(f"{env} unlocked." if state is not None else f"{env} was not locked: nothing changed.")


# --- Freezes ------------------------------------------------------------------------------------


@task(
    help={
        "env": "the environment (stage) to freeze",
        "reason": REASON_HELP,
        "until": "when it ends by itself: 2h, 3d, or a time such as 2026-12-24T18:00",
        "config": CONFIG_HELP,
    }
)
def freeze(c: Context, env: str, reason: str = "", until: str | None = None, config: str = CONFIG) -> None:
    """Freeze ENV: nothing starts deploying to it until unfrozen (or --until)."""
    _here(c, "freeze")
    services = _services(config, connect=False)
    state = _asked(lambda: services.freeze(env, reason, until))
    print(frozen_text(state))


@task(
    help={
        "env": "the environment (stage) to unfreeze",
        "reason": "why (optional): it goes into the history with your name",
        "config": CONFIG_HELP,
    }
)
def unfreeze(c: Context, env: str, reason: str = "", config: str = CONFIG) -> None:
    """Lift ENV's freeze: releases waiting for it move on the next pass."""
    _here(c, "unfreeze")
    services = _services(config, connect=False)
    state = _asked(lambda: services.unfreeze(env, reason))
    print(f"{env} unfrozen." if state is not None else f"{env} was not frozen: nothing changed.")


# --- Hotfixes -----------------------------------------------------------------------------------


@task(help={"branch": "the hotfix branch, e.g. hotfix/login (source.hotfix_branches)", "config": CONFIG_HELP})
def hotfix(c: Context, branch: str, config: str = CONFIG) -> None:
    """Take the head of hotfix BRANCH to production on its own, through staging and approval."""
    _here(c, "hotfix")
    services = _services(config)
    release = _asked(lambda: services.start_hotfix(branch))
    print(f"release {release.id} {release.commit[:12]} from {branch} {release.state}: {release.reason}")
    print(
        "Next: the controller's passes (`pipeline serve`) take it through the staging checks to its "
        "release pull request, where it waits for the Product Owner's approval like any release; "
        f"`pipeline status` and `pipeline show {release.id}` follow it. Once released, a pull request "
        f"brings it back into {services.settings.source.branch}."
    )


# --- Backups ------------------------------------------------------------------------------------


@task(
    help={
        "backup": "the backup to restore: b012, its number or uuid (default: the newest completed)",
        "keep": "keep the scratch database (it is dropped otherwise)",
        "config": CONFIG_HELP,
    }
)
def restore_drill(c: Context, backup: str | None = None, keep: bool = False, config: str = CONFIG) -> None:
    """Restore a production backup into a scratch database and check it (-H: on that host)."""
    services = _services(config)
    report = _asked(lambda: services.restore_drill(c, backup, keep=keep))
    for line in report.lines():
        print(line)
    if not report.ok:
        raise Exit(code=REFUSED)


# --- Credentials --------------------------------------------------------------------------------


@task(
    help={
        "webhook_url": "where the webhook points (default: webhooks.public_url, else host:port)",
        "config": CONFIG_HELP,
    }
)
def rotate_credentials(c: Context, webhook_url: str | None = None, config: str = CONFIG) -> None:
    """After putting new credentials in the environment: check each, re-arm the webhook."""
    _here(c, "rotate-credentials")
    services = bootstrap.unchecked_services(_settings(config))
    checks = _asked(lambda: services.check_credentials(webhook_url))
    for check in checks:
        print(check_line(check))
    if services.settings.webhooks is not None and services.settings.webhook_secret is None:
        print("BITBUCKET_WEBHOOK_SECRET is not set: the webhook was not touched, and serve will not start.")
    missing = [check for check in checks if not check.ok]
    if missing:
        said = "\n".join(f"error: {c.credential} cannot {c.need}: {c.detail}" for c in missing)
        raise Exit(said, REFUSED)
