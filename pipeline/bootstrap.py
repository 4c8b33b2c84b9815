"""The composition root: the one place that builds things from settings.

Nothing is built at import time. The product never imports ``sandbox``; the sandbox wiring
below imports it lazily, only when someone asks for the sandbox.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.adapters.bitbucket import BitbucketCloud
    from pipeline.adapters.heroku import HerokuPlatform
    from pipeline.adapters.heroku_data import HerokuBackups
    from pipeline.config import Settings
    from pipeline.model import Person
    from pipeline.ports import SourceControl
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
    from pipeline.controller import Controller
    from pipeline.services import Services

    redact_logs(settings.secrets)
    releases = store(settings)
    if not connect:
        return Services(settings, releases)
    source, platform, backups = adapters(settings)
    account = source.check_access()
    platform.check_access()
    approvers, reviewers = pinned_approvers(settings, source, account)
    controller = Controller(
        settings,
        source,
        platform,
        backups,
        releases,
        controller_account=account,
        approvers=approvers,
        reviewers=reviewers,
    )
    return Services(
        settings, releases, controller=controller, platform=platform, source=source, backups=backups
    )


def unchecked_services(settings: Settings) -> Services:
    """The services over the real adapters, with nothing checked yet (no request is sent): for
    ``pipeline credentials check``, which reports every credential's trouble rather than stopping
    at the first. No controller: nothing moves releases with them."""
    from pipeline.services import Services

    redact_logs(settings.secrets)
    source, platform, backups = adapters(settings)
    return Services(settings, store(settings), platform=platform, source=source, backups=backups)


def adapters(settings: Settings) -> tuple[BitbucketCloud, HerokuPlatform, HerokuBackups]:
    """Bitbucket, Heroku and the Heroku Data API with the settings' credentials (building them sends
    no request)."""
    from pipeline.adapters.heroku import HerokuPlatform
    from pipeline.adapters.heroku_data import HerokuBackups

    assert settings.heroku_api_key is not None
    heroku_key = settings.heroku_api_key.get_secret_value()
    return (
        bitbucket(settings),
        HerokuPlatform(settings.heroku.api_url, heroku_key),
        HerokuBackups(settings.heroku.data_api_url, settings.heroku.api_url, heroku_key),
    )


def bitbucket(settings: Settings) -> BitbucketCloud:
    """The Bitbucket adapter with the controller's credential, as the settings say it is sent."""
    from pipeline.adapters.bitbucket import BitbucketCloud, BitbucketCredential

    assert settings.bitbucket_token is not None
    credential = BitbucketCredential(settings.bitbucket_token.get_secret_value(), settings.bitbucket_email)
    src = settings.source
    return BitbucketCloud(src.url, credential, src.workspace, src.repository)


def pinned_approvers(
    settings: Settings, source: SourceControl, account: Person | None
) -> tuple[frozenset[str], tuple[str, ...]]:
    """The approvers' account ids and uuids, and one id each to ask them to review. Approvers written
    as account ids or {uuid}s need no request; nicknames are looked up among the workspace's
    members, which a credential may not read (an access token): then the error says to write ids.
    ConfigInvalid (exit 2) naming each approver that designates nobody, or is ambiguous."""
    from pipeline import domain
    from pipeline.errors import ConfigError, ConfigInvalid, Permanent

    names = tuple(settings.approval.approvers)
    where = settings.config_path.name
    if all(domain.is_account_ident(n) for n in names):
        return frozenset(names), domain.reviewers_of(names, [], account)
    try:
        members = source.workspace_members()
    except Permanent as exc:
        if exc.status not in (401, 403):
            raise
        ws = settings.source.workspace
        raise ConfigInvalid(
            [
                ConfigError(
                    where,
                    f"approval.approvers[{i}]",
                    f"{name!r} is a nickname, and BITBUCKET_TOKEN may not read the members of workspace "
                    f"{ws} to say whose it is ({exc.status}: an access token cannot): write the "
                    "approver's account id or {uuid} instead (`curl -u <e-mail>:<your API token> "
                    f"https://api.bitbucket.org/2.0/workspaces/{ws}/members` lists each member's "
                    "user.account_id and user.uuid)",
                )
                for i, name in enumerate(names)
                if not domain.is_account_ident(name)
            ]
        ) from None
    approvers, problems = domain.pin_approvers(names, members)
    if problems:
        raise ConfigInvalid([ConfigError(where, f"approval.approvers[{i}]", why) for i, why in problems])
    return approvers, domain.reviewers_of(names, members, account)


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
