"""What :func:`pipeline.config.load` resolves: the frozen :class:`Settings`, its stages and
their checks, and the secrets a loaded :class:`Settings` still lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr

from checks import CheckOptions
from pipeline.config.environment import (
    DEFAULT_RESTORE_SERVER,
    ENVIRONMENT,
    SECRET_HINTS,
    WEBHOOK_SECRET,
    unset_secrets,
)
from pipeline.config.models import (
    ApprovalSettings,
    BackupSettings,
    HerokuSettings,
    RollbackSettings,
    ScheduleSettings,
    SourceSettings,
    WebhookSettings,
    WindowsSettings,
)
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class CheckSpec:
    """One configured check: the plugin's name (module under ``checks/``) and its validated options.

    Run it with ``checks.run_check(spec.kind, spec.options, target)``; ``spec.options.retries`` and
    ``spec.options.interval`` say how often the controller tries.
    """

    kind: str
    options: CheckOptions


@dataclass(frozen=True)
class StageSettings:
    """One stage, from ``environments/<name>.yml``. ``pipeline`` is always set for production;
    ``backups`` is set for production only (its defaults when the file has no ``backups:``)."""

    name: str
    file: Path
    app: str
    pipeline: str | None
    checks: tuple[CheckSpec, ...]
    backups: BackupSettings | None
    windows: WindowsSettings | None = None
    rollback: RollbackSettings = field(default_factory=RollbackSettings)


@dataclass(frozen=True)
class Settings:
    """Everything the service needs, resolved and validated. Secrets are ``SecretStr`` (None when
    unset, only possible with ``load(require_secrets=False)``); ``repr`` shows neither them nor the
    database URL."""

    name: str
    config_path: Path
    source: SourceSettings
    approval: ApprovalSettings
    schedule: ScheduleSettings
    heroku: HerokuSettings
    stages: tuple[StageSettings, ...]
    bitbucket_token: SecretStr | None
    heroku_api_key: SecretStr | None
    database_url: str = field(repr=False)
    actor: str
    # Set: BITBUCKET_TOKEN is an Atlassian API token of this account (Basic email:token); unset: an
    # access token (Bearer).
    bitbucket_email: str | None = None
    # Fault injection for crash drills and tests (PIPELINE_CRASH_AT): points such as
    # "after:StagingBuildRequested" or "before:PromotionStarted" where the process exits at once.
    crash_at: tuple[str, ...] = ()
    webhooks: WebhookSettings | None = None
    webhook_secret: SecretStr | None = None
    # Where the restore drill may create scratch databases (PIPELINE_RESTORE_DATABASE_URL).
    restore_server: SecretStr = field(default_factory=lambda: SecretStr(DEFAULT_RESTORE_SERVER), repr=False)

    @property
    def secrets(self) -> list[str]:
        """The values of every secret that is set (to keep them out of logs and output)."""
        found = (self.bitbucket_token, self.heroku_api_key, self.webhook_secret)
        values = [s.get_secret_value() for s in found if s is not None]
        password = urlsplit(self.restore_server.get_secret_value()).password
        return values + ([password] if password else [])

    @property
    def staging(self) -> StageSettings:
        """The first stage: where every release is built and verified."""
        return self.stages[0]

    @property
    def production(self) -> StageSettings:
        """The last stage: where the verified slug is promoted."""
        return self.stages[-1]

    @property
    def sandbox(self) -> bool:
        """True when neither secret is set (informational: the service then reaches nothing real)."""
        return self.bitbucket_token is None and self.heroku_api_key is None


def missing_secrets(settings: Settings) -> list[ConfigError]:
    """The secrets ``settings`` lacks, as problems (for ``config check`` after
    ``load(require_secrets=False)``); empty when every needed one is set."""
    return unset_secrets(settings.bitbucket_token, settings.heroku_api_key) + missing_webhook_secret(settings)


def missing_webhook_secret(settings: Settings) -> list[ConfigError]:
    """The webhook secret as a problem when ``webhooks:`` is configured and it is not set: ``serve``
    takes no unsigned delivery, and ``webhooks install`` gives Bitbucket this secret."""
    if settings.webhooks is None or settings.webhook_secret is not None:
        return []
    return [ConfigError(ENVIRONMENT, WEBHOOK_SECRET, SECRET_HINTS[WEBHOOK_SECRET])]
