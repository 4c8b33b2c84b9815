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
    from pipeline.scheduler import Scheduler
    from pipeline.services import Services
    from pipeline.store import SqlStore
    from pipeline.web.server import WebServer
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

    redact_logs(settings.secrets)
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
    return Services(settings, releases, controller=controller, platform=platform, source=source)


def web_server(services: Services, scheduler: Scheduler) -> WebServer | None:
    """The webhook receiver ``serve`` runs beside its scheduler (None without ``webhooks:``), bound
    but not started: a taken port is an OSError here, before anything runs. A genuine, new delivery
    of an event that can move a release brings the next pass forward and makes it look at
    everything; repeats are recognised through the store, across restarts and processes."""
    from pipeline.controller import utcnow
    from pipeline.web.app import create_app
    from pipeline.web.server import WebServer
    from pipeline.web.webhooks import Delivery, WebhookReceiver

    settings = services.settings
    if settings.webhooks is None:
        return None
    assert settings.webhook_secret is not None, "serve checks the secret before building the server"
    log = logging.getLogger("pipeline.webhooks")

    def note(request_uuid: str, event: str) -> bool:
        return services.store.record_delivery(settings.name, request_uuid, event, utcnow())

    def act(delivery: Delivery) -> None:
        log.info(
            "webhook %s (%s, attempt %s): a pass starts",
            delivery.event,
            delivery.request_uuid,
            delivery.attempt,
        )
        scheduler.run_now(look=True)

    def health() -> dict[str, Any]:
        def iso(at: Any) -> str | None:
            return at.isoformat().replace("+00:00", "Z") if at else None

        return {
            "status": "ok",
            "pipeline": settings.name,
            "passes": scheduler.passes,
            "last_pass_started_at": iso(scheduler.last_pass_started_at),
            "last_pass_at": iso(scheduler.last_pass_at),
        }

    receiver = WebhookReceiver(
        secret=settings.webhook_secret.get_secret_value(),
        workspace=settings.source.workspace,
        repository=settings.source.repository,
        note_delivery=note,
        on_delivery=act,
    )
    return WebServer(create_app(receiver, health), settings.webhooks.host, settings.webhooks.port)


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
