"""The composition root: the one place that builds things from settings.

Nothing is built at import time. The product never imports ``sandbox``; the sandbox wiring
below imports it lazily, only when someone asks for the sandbox.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.services import Services
    from pipeline.store import SqlStore
    from sandbox.core import Sandbox


def sandbox(state_dir: Path, ports: dict[str, int] | None = None, **options: Any) -> Sandbox:
    """A sandbox (not yet started) keeping its state in ``state_dir``; ``options`` go to ``Sandbox``."""
    from sandbox.core import Sandbox

    return Sandbox(state_dir, ports=ports, **options)


def running_sandbox(state_dir: Path) -> dict[str, Any] | None:
    """The description of the sandbox running on ``state_dir``, or None."""
    from sandbox.core import running_info

    return running_info(state_dir)


def settings(
    config_path: Path, *, require_secrets: bool = True, overrides: dict[str, str] | None = None
) -> Settings:
    """Read pipeline.yml, environments/ and the environment once (ConfigInvalid on any problem);
    ``overrides`` win over the environment (the sandbox's endpoints when `make run` starts it)."""
    from pipeline import config

    return config.load(config_path, require_secrets=require_secrets, overrides=overrides)


def sandbox_database_url(state_dir: Path) -> str:
    """Where the service keeps its history when it runs against the sandbox in ``state_dir``:
    beside the sandbox's own state, never mixed with a real history."""
    return f"sqlite:///{(state_dir / 'pipeline.db').resolve()}"


def store(settings: Settings) -> SqlStore:
    """The release store at ``settings.database_url``, migrated to the newest schema."""
    from pipeline.store import open_store

    return open_store(settings.database_url)


def services(settings: Settings, *, connect: bool = True) -> Services:
    """The services over the real adapters. ``connect=False`` gives the store-only services the
    reading commands need (history, show); otherwise credentials are checked here, once, so a bad
    token fails at start with a message naming it."""
    from pipeline import domain
    from pipeline.adapters.bitbucket import BitbucketCloud
    from pipeline.adapters.heroku import HerokuPlatform
    from pipeline.adapters.heroku_data import HerokuBackups
    from pipeline.controller import Controller
    from pipeline.errors import ConfigError, ConfigInvalid
    from pipeline.services import Services

    redact_logs(
        [s.get_secret_value() for s in (settings.bitbucket_token, settings.heroku_api_key) if s is not None]
    )
    releases = store(settings)
    if not connect:
        return Services(settings, releases)
    assert settings.bitbucket_token is not None and settings.heroku_api_key is not None
    bitbucket_token = settings.bitbucket_token.get_secret_value()
    heroku_key = settings.heroku_api_key.get_secret_value()
    src = settings.source
    source = BitbucketCloud(src.url, bitbucket_token, src.workspace, src.repository)
    platform = HerokuPlatform(settings.heroku.api_url, heroku_key)
    backups = HerokuBackups(settings.heroku.data_api_url, settings.heroku.api_url, heroku_key)
    source.check_access()
    platform.check_access()
    account = source.account()
    approvers, problems = domain.pin_approvers(tuple(settings.approval.approvers), source.workspace_members())
    if problems:
        where = settings.config_path.name
        raise ConfigInvalid([ConfigError(where, f"approval.approvers[{i}]", why) for i, why in problems])
    controller = Controller(
        settings, source, platform, backups, releases, controller_account=account, approvers=approvers
    )
    return Services(settings, releases, controller=controller, platform=platform)


class _Redact(logging.Filter):
    """Replaces secret values in every log record, whoever logs it (our code or a library)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 8]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            record.msg, record.args = self._blank(message), None
        if record.exc_info and not record.exc_text:
            # Formatters print exc_text when it is set: a traceback's text is redacted too.
            record.exc_text = self._blank(logging.Formatter().formatException(record.exc_info))
        return True

    def _blank(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def redact_logs(secrets: list[str]) -> None:
    """Make every handler of the root logger blank out ``secrets`` (idempotent)."""
    for handler in logging.getLogger().handlers:
        handler.filters = [f for f in handler.filters if not isinstance(f, _Redact)]
        handler.addFilter(_Redact(secrets))
