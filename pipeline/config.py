"""Configuration as code: ``pipeline.yml``, ``environments/<stage>.yml`` and the environment, read
once into frozen, typed :class:`Settings`.

This is the only module of the product that reads environment variables. It reads:

- ``BITBUCKET_TOKEN``, ``HEROKU_API_KEY`` and ``BITBUCKET_WEBHOOK_SECRET``: the secrets. They never
  come from a file; a key that looks like a secret in a file is an error saying which variable to set.
- ``PIPELINE_DATABASE_URL`` (default ``sqlite:///<config dir>/.pipeline/pipeline.db``) and
  ``PIPELINE_ACTOR`` (default the OS user): where history is kept and who "I" am in it.
- ``PIPELINE_RESTORE_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``):
  a PostgreSQL server where the restore drill may create (and drop) scratch databases.
- whatever ``${VAR}`` / ``${VAR:-default}`` references in the files' string values name
  (``$${`` is a literal ``${``).

:func:`load` validates everything before anything starts and either returns :class:`Settings` or
raises :class:`~pipeline.errors.ConfigInvalid` listing EVERY problem found, one line each:
``<file>: <key.path>: <what is expected / what to do>`` (``checks[0].http.retries``). Problems
with environment variables name the file ``environment``. No message repeats a configured value,
so a secret pasted in the wrong place is never echoed. :func:`describe` renders the resolved plan
for ``pipeline config check``.
"""

from __future__ import annotations

import difflib
import getpass
import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import ErrorDetails

import checks
from checks import CheckOptions, PositiveDuration
from pipeline.errors import ConfigError, ConfigInvalid
from pipeline.model import DeployWindows, Window

ENVIRONMENT = "environment"
"""The "file" that problems with environment variables name."""

SECRET_HINTS = {
    "BITBUCKET_TOKEN": (
        "not set: export the Bitbucket API token of the controller's account (it reads the repository, "
        "posts statuses, pushes release branches and opens pull requests); `pipeline sandbox env` "
        "prints the sandbox's"
    ),
    "HEROKU_API_KEY": (
        "not set: export a Heroku API key allowed to deploy both apps, promote between them and "
        "capture backups (`heroku authorizations:create`); `pipeline sandbox env` prints the sandbox's"
    ),
}
DEFAULT_RESTORE_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
WEBHOOK_SECRET = "BITBUCKET_WEBHOOK_SECRET"
SECRET_HINTS[WEBHOOK_SECRET] = (
    "not set: pipeline.yml has webhooks:, and deliveries are only taken when signed; export a long "
    "random secret (e.g. `openssl rand -hex 32`), then `pipeline webhooks install` gives it to Bitbucket"
)
_SECRET_WORDS = ("token", "password", "passwd", "api_key", "apikey", "secret")


# --- Value types ------------------------------------------------------------------------------


def _identifier(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        raise ValueError("expected letters, digits, '.', '-' or '_' (no spaces or slashes)")
    return value


def _branch(value: str) -> str:
    if value.startswith("-") or ".." in value or re.search(r"[\s~^:?*\[\\]", value):
        raise ValueError("expected a git branch name (no spaces, '..', '~', '^', ':', '?', '*', '[')")
    return value


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    return value.rstrip("/")


def _none_is_empty(value: object) -> object:
    return {} if value is None else value


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Identifier = Annotated[Text, AfterValidator(_identifier)]
Branch = Annotated[Text, AfterValidator(_branch)]
Url = Annotated[Text, AfterValidator(_url)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- pipeline.yml -----------------------------------------------------------------------------


class SourceSettings(_Section):
    """``source:`` in pipeline.yml: the watched repository and its branches."""

    provider: Literal["bitbucket-cloud"] = Field(
        default="bitbucket-cloud", description="the source control service; only bitbucket-cloud"
    )
    url: Url = Field(default="https://api.bitbucket.org", description="Bitbucket API root, without /2.0")
    workspace: Identifier = Field(description="the Bitbucket workspace id, as in bitbucket.org/<workspace>/")
    repository: Identifier = Field(
        description="the repository slug, as in bitbucket.org/<workspace>/<repository>"
    )
    branch: Branch = Field(default="develop", description="the branch whose merges become releases")
    production_branch: Branch = Field(
        default="main", description="the branch a released commit is merged into"
    )
    required_builds: tuple[Text, ...] = Field(
        default=(), description="commit status keys that must be SUCCESSFUL before staging"
    )
    hotfix_branches: Text = Field(
        default="hotfix/*",
        description="a glob of the branches `pipeline hotfix BRANCH` takes to production on their own",
    )


def _never_is_none(value: object) -> object:
    if isinstance(value, str) and value.strip().lower() in ("never", "none", "off"):
        return None
    return value


class ApprovalSettings(_Section):
    """``approval:`` in pipeline.yml: who may approve a release, how many must, and which approvals
    count. Every rule is on by default; switching one off is written out."""

    approvers: tuple[Text, ...] = Field(
        min_length=1,
        description='Bitbucket usernames (nickname), account ids or "{uuid}"s allowed to approve',
    )
    min_approvals: int = Field(default=1, ge=1, description="distinct approvers needed, 1..len(approvers)")
    max_age: Annotated[PositiveDuration | None, BeforeValidator(_never_is_none)] = Field(
        default=timedelta(hours=72),
        description="an approval older than this at the moment of promotion no longer counts (never: off)",
    )
    authors_may_approve: bool = Field(
        default=False, description="true lets the author of a commit in the release approve it"
    )
    unlinked_authors: Literal["block", "allow"] = Field(
        default="block",
        description="block: no approval counts while a commit's author has no Bitbucket account "
        "(nobody can be shown not to be its author); allow: ignore such commits",
    )


class WebhookSettings(_Section):
    """``webhooks:`` in pipeline.yml: where ``pipeline serve`` takes Bitbucket's webhook deliveries."""

    host: Text = Field(default="127.0.0.1", description="the address serve listens on for webhooks")
    port: int = Field(default=8765, ge=0, le=65535, description="the port (0: any free port)")
    public_url: Url | None = Field(
        default=None,
        description="the URL Bitbucket posts to (through your proxy), for `pipeline webhooks install`",
    )


class ScheduleSettings(_Section):
    """``schedule:`` in pipeline.yml."""

    poll_interval: PositiveDuration = Field(
        default=timedelta(seconds=30), description="time between two reconcile passes"
    )


class HerokuSettings(_Section):
    """``heroku:`` in pipeline.yml: where the Heroku APIs answer."""

    api_url: Url = Field(default="https://api.heroku.com", description="Heroku Platform API root")
    data_api_url: Url = Field(
        default="https://api.data.heroku.com", description="Heroku Data API root (Postgres backups)"
    )


def _two_stages(stages: tuple[str, ...]) -> tuple[str, ...]:
    if len(stages) != 2 or stages[0] == stages[1]:
        raise ValueError(
            "expected exactly two different stages, staging first then production: [staging, production]"
        )
    return stages


Stages = Annotated[tuple[Identifier, ...], AfterValidator(_two_stages)]


class _PipelineFile(_Section):
    name: Identifier | None = Field(
        default=None, description="the pipeline's name; default source.repository"
    )
    source: SourceSettings = Field(description="the watched Bitbucket repository (workspace, repository)")
    stages: Stages = Field(
        default=("staging", "production"), description="environments/<stage>.yml names: staging, production"
    )
    approval: ApprovalSettings = Field(description="who approves releases (approvers, min_approvals)")
    schedule: Annotated[ScheduleSettings, BeforeValidator(_none_is_empty)] = Field(
        default_factory=ScheduleSettings, description="when the controller runs"
    )
    heroku: Annotated[HerokuSettings, BeforeValidator(_none_is_empty)] = Field(
        default_factory=HerokuSettings, description="Heroku API roots"
    )
    webhooks: Annotated[WebhookSettings | None, BeforeValidator(_none_is_empty)] = Field(
        default=None, description="where serve listens for Bitbucket webhooks (host, port, public_url)"
    )


# --- environments/<stage>.yml -----------------------------------------------------------------


class BackupSettings(_Section):
    """``backups:`` in the production stage's file."""

    capture_before_promotion: bool = Field(
        default=True, description="capture a production database backup before every promotion"
    )
    max_age: PositiveDuration = Field(
        default=timedelta(hours=26),
        description="the newest completed production backup may be at most this old",
    )
    restore_checks: tuple[Text, ...] = Field(
        default=(),
        description="SQL the restore drill runs on a restored backup; each returns true or a non-zero number",
    )


class _StageHeroku(_Section):
    app: Text = Field(description="the Heroku app (name or id) of this stage")
    pipeline: Text | None = Field(
        default=None,
        description="the Heroku pipeline (name or id) holding both apps; required for production",
    )


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = {name: i for i, name in enumerate(DAYS)} | {
    full: i
    for i, full in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
}
_HOURS = re.compile(r"(?P<h1>[01]\d|2[0-3]):(?P<m1>[0-5]\d)-(?P<h2>[01]\d|2[0-3]|24):(?P<m2>[0-5]\d)")


def _day(value: object) -> int:
    if isinstance(value, str) and value.strip().lower() in _DAY_NAMES:
        return _DAY_NAMES[value.strip().lower()]
    raise ValueError(f"expected a day of the week: {', '.join(DAYS)}")


def _hours(value: object) -> tuple[time, time]:
    match = _HOURS.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError('expected hours such as "09:00-17:00" (24-hour clock; the end may be 24:00)')
    start = time(int(match["h1"]), int(match["m1"]))
    if match["h2"] == "24" and match["m2"] != "00":
        raise ValueError('expected hours such as "09:00-17:00": the end may be 24:00, not later')
    end = time(0) if match["h2"] == "24" else time(int(match["h2"]), int(match["m2"]))
    if end != time(0) and end <= start:
        raise ValueError("the end must be after the start (a window does not cross midnight: use two)")
    return start, end


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            "not a time zone: use an IANA name such as Europe/Amsterdam, America/New_York or UTC"
        ) from None
    return value


def _pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


class WindowSettings(_Section):
    """One item of ``windows.allow``: days of the week and hours of the day."""

    days: Annotated[tuple[Annotated[int, BeforeValidator(_day)], ...], Field(min_length=1)] = Field(
        description="days of the week: mon, tue, wed, thu, fri, sat, sun"
    )
    hours: Annotated[tuple[time, time], BeforeValidator(_hours)] = Field(
        default=(time(0), time(0)), description='hours of the day, e.g. "09:00-17:00" (default all day)'
    )


class WindowsSettings(_Section):
    """``windows:`` in a stage's file: when a deployment of it may start."""

    timezone: Annotated[Text, AfterValidator(_zone)] = Field(
        default="UTC", description="the IANA time zone the windows are in"
    )
    allow: tuple[WindowSettings, ...] = Field(min_length=1, description="the windows: [{days, hours}, ...]")

    def windows(self) -> DeployWindows:
        return DeployWindows(
            ZoneInfo(self.timezone),
            tuple(Window(frozenset(w.days), w.hours[0], w.hours[1]) for w in self.allow),
        )


MIGRATION_PATTERN = r"(?im)^.*\b(applying|migrating|running upgrade)\b"


class RollbackSettings(_Section):
    """``rollback:`` in a stage's file."""

    migration_pattern: Annotated[Text, AfterValidator(_pattern)] = Field(
        default=MIGRATION_PATTERN,
        description="a regular expression matching a release phase's output when it migrated the database",
    )


class _EnvironmentFile(_Section):
    heroku: _StageHeroku = Field(description="the stage's Heroku app: {app: ..., pipeline: ...}")
    checks: list[Any] | None = Field(
        default=None, description="post-deploy checks, e.g. - http: {path: /health}"
    )
    backups: Annotated[BackupSettings | None, BeforeValidator(_none_is_empty)] = Field(
        default=None, description="production backup policy"
    )
    windows: WindowsSettings | None = Field(
        default=None, description="when a deployment may start: {timezone, allow: [{days, hours}]}"
    )
    rollback: Annotated[RollbackSettings, BeforeValidator(_none_is_empty)] = Field(
        default_factory=RollbackSettings, description="rollback rules: {migration_pattern}"
    )


# --- Settings ---------------------------------------------------------------------------------


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


# --- Loading ----------------------------------------------------------------------------------

Loc = tuple[int | str, ...]
_M = TypeVar("_M", bound=BaseModel)


def load(
    config_path: Path = Path("pipeline.yml"),
    env: Mapping[str, str] | None = None,
    *,
    require_secrets: bool = True,
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Read ``config_path``, ``environments/<stage>.yml`` next to it and ``env`` (default
    ``os.environ``) into :class:`Settings`.

    Raises :class:`ConfigInvalid` with every problem found: missing or unreadable files, YAML syntax
    (with line), unknown keys (a secret-looking one says which variable to set instead), wrong
    types, bad durations, unset ``${VAR}``, unknown checks and their bad options, cross-key rules
    (min_approvals, production's heroku.pipeline, two different apps), a malformed
    PIPELINE_DATABASE_URL and, when ``require_secrets``, a missing BITBUCKET_TOKEN or HEROKU_API_KEY.
    ``require_secrets=False`` is for commands that only read the store, and for showing the plan.
    ``overrides`` win over ``env`` (the sandbox's endpoints and tokens when `make run` starts it).
    """
    environ: Mapping[str, str] = {**(os.environ if env is None else env), **(overrides or {})}
    problems: list[ConfigError] = []
    display = str(config_path)

    pipeline_file: _PipelineFile | None = None
    stage_names: tuple[str, ...] = ()
    data = _read_yaml(
        config_path,
        display,
        problems,
        missing="not found: run from the directory holding pipeline.yml, or give its path",
    )
    if data is not None:
        data, unresolved = _interpolate(data, environ, display, problems)
        pipeline_file = _validate(_PipelineFile, data, display, problems, skip=unresolved)
        _check_pipeline_rules(data, display, problems)
        stage_names = pipeline_file.stages if pipeline_file is not None else _stages_alone(data)

    stages: list[StageSettings] = []
    environments_dir = config_path.parent / "environments"
    for index, stage in enumerate(stage_names):
        is_production = index == len(stage_names) - 1
        loaded = _load_stage(stage, environments_dir / f"{stage}.yml", is_production, environ, problems)
        if loaded is not None:
            stages.append(loaded)
    if len(stages) == 2:
        _check_stage_pair(stages[0], stages[1], config_path, problems)

    bitbucket_token = _secret(environ, "BITBUCKET_TOKEN")
    heroku_api_key = _secret(environ, "HEROKU_API_KEY")
    webhook_secret = _secret(environ, WEBHOOK_SECRET)
    if require_secrets:
        problems.extend(_missing(bitbucket_token, heroku_api_key))
    database_url = _database_url(environ, config_path, problems)
    restore = environ.get("PIPELINE_RESTORE_DATABASE_URL", "").strip()
    if restore and not re.match(r"postgres(ql)?://", restore):
        problems.append(
            ConfigError(
                ENVIRONMENT,
                "PIPELINE_RESTORE_DATABASE_URL",
                "expected a PostgreSQL URL such as postgresql://user@host:5432/postgres, a server where "
                "the restore drill may create scratch databases (or unset it for the local server)",
            )
        )
    crash_at = _crash_points(environ, problems)

    if problems or pipeline_file is None or len(stages) != 2:
        raise ConfigInvalid(problems)
    return Settings(
        name=pipeline_file.name or pipeline_file.source.repository,
        config_path=config_path.resolve(),
        source=pipeline_file.source,
        approval=pipeline_file.approval,
        schedule=pipeline_file.schedule,
        heroku=pipeline_file.heroku,
        stages=tuple(stages),
        bitbucket_token=bitbucket_token,
        heroku_api_key=heroku_api_key,
        database_url=database_url,
        actor=_actor(environ),
        crash_at=crash_at,
        webhooks=pipeline_file.webhooks,
        webhook_secret=webhook_secret,
        restore_server=_secret(environ, "PIPELINE_RESTORE_DATABASE_URL") or SecretStr(DEFAULT_RESTORE_SERVER),
    )


def missing_secrets(settings: Settings) -> list[ConfigError]:
    """The secrets ``settings`` lacks, as problems (for ``config check`` after
    ``load(require_secrets=False)``); empty when every needed one is set."""
    return _missing(settings.bitbucket_token, settings.heroku_api_key) + missing_webhook_secret(settings)


def missing_webhook_secret(settings: Settings) -> list[ConfigError]:
    """The webhook secret as a problem when ``webhooks:`` is configured and it is not set: ``serve``
    takes no unsigned delivery, and ``webhooks install`` gives Bitbucket this secret."""
    if settings.webhooks is None or settings.webhook_secret is not None:
        return []
    return [ConfigError(ENVIRONMENT, WEBHOOK_SECRET, SECRET_HINTS[WEBHOOK_SECRET])]


def _missing(bitbucket_token: SecretStr | None, heroku_api_key: SecretStr | None) -> list[ConfigError]:
    found = {"BITBUCKET_TOKEN": bitbucket_token, "HEROKU_API_KEY": heroku_api_key}
    return [
        ConfigError(ENVIRONMENT, name, SECRET_HINTS[name]) for name, value in found.items() if value is None
    ]


def _secret(env: Mapping[str, str], name: str) -> SecretStr | None:
    value = env.get(name, "").strip()
    return SecretStr(value) if value else None


def _database_url(env: Mapping[str, str], config_path: Path, problems: list[ConfigError]) -> str:
    value = env.get("PIPELINE_DATABASE_URL", "").strip()
    if not value:
        return f"sqlite:///{config_path.resolve().parent / '.pipeline' / 'pipeline.db'}"
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):
        problems.append(
            ConfigError(
                ENVIRONMENT,
                "PIPELINE_DATABASE_URL",
                "expected a database URL such as sqlite:////abs/path/pipeline.db or "
                "postgresql+psycopg://user:password@host/db (or unset it for the default SQLite file)",
            )
        )
    return value


def _crash_points(env: Mapping[str, str], problems: list[ConfigError]) -> tuple[str, ...]:
    points = tuple(p.strip() for p in env.get("PIPELINE_CRASH_AT", "").split(",") if p.strip())
    for point in points:
        if not re.fullmatch(r"(before|after):[A-Z][A-Za-z]+", point):
            problems.append(
                ConfigError(
                    ENVIRONMENT,
                    "PIPELINE_CRASH_AT",
                    "expected comma-separated points such as after:StagingBuildRequested or "
                    "before:PromotionStarted (event kinds of `pipeline show`); unset it to run normally",
                )
            )
            break
    return points


def _actor(env: Mapping[str, str]) -> str:
    actor = env.get("PIPELINE_ACTOR", "").strip()
    if actor:
        return actor
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # getpass raises OSError (or KeyError before 3.13) when no user can be found
        return "unknown"


def _stages_alone(data: dict[str, Any]) -> tuple[str, ...]:
    """The stages of a pipeline.yml that failed validation elsewhere, so their files are still read."""
    try:
        return TypeAdapter(Stages).validate_python(data.get("stages", ("staging", "production")))
    except ValidationError:
        return ()


def _load_stage(
    name: str, path: Path, is_production: bool, env: Mapping[str, str], problems: list[ConfigError]
) -> StageSettings | None:
    display = str(path)
    role = "production" if is_production else "staging"
    data = _read_yaml(
        path,
        display,
        problems,
        missing=f"not found: pipeline.yml lists stage {name!r} ({role}); create this file or fix stages",
    )
    if data is None:
        return None
    data, unresolved = _interpolate(data, env, display, problems)
    before = len(problems)
    environment = _validate(_EnvironmentFile, data, display, problems, skip=unresolved)
    raw_checks = data.get("checks")
    specs = _check_specs(raw_checks, display, unresolved, problems) if isinstance(raw_checks, list) else ()
    if not is_production and "backups" in data:
        problems.append(
            ConfigError(
                display, "backups", "backups apply to the production stage only; remove this key here"
            )
        )
    heroku = data.get("heroku")
    if is_production and isinstance(heroku, dict) and heroku.get("pipeline") is None:
        problems.append(
            ConfigError(
                display,
                "heroku.pipeline",
                "required for production: the Heroku pipeline (name or id) holding both apps; "
                "promotion copies the staging slug through it",
            )
        )
    if environment is None or len(problems) != before:
        return None
    backups = environment.backups
    if is_production and backups is None:
        backups = BackupSettings()
    return StageSettings(
        name=name,
        file=path.resolve(),
        app=environment.heroku.app,
        pipeline=environment.heroku.pipeline,
        checks=specs,
        backups=backups if is_production else None,
        windows=environment.windows,
        rollback=environment.rollback,
    )


def _check_specs(
    items: list[Any], display: str, skip: set[Loc], problems: list[ConfigError]
) -> tuple[CheckSpec, ...]:
    known = checks.known_plugins()
    specs: list[CheckSpec] = []
    for index, item in enumerate(items):
        where: Loc = ("checks", index)
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(
                ConfigError(
                    display,
                    _key(where),
                    f"expected a mapping with one key, the check's name (one of: {', '.join(known)}), "
                    "e.g. - http: {path: /health}",
                )
            )
            continue
        ((kind, raw_options),) = item.items()
        try:
            plugin = checks.load_plugin(str(kind))
        except checks.UnknownCheck as exc:
            problems.append(ConfigError(display, _key(where), str(exc)))
            continue
        where = (*where, str(kind))
        if raw_options is None:
            raw_options = {}
        if not isinstance(raw_options, dict):
            problems.append(
                ConfigError(
                    display,
                    _key(where),
                    "expected a mapping of the check's options (or nothing, for defaults)",
                )
            )
            continue
        options = _validate(plugin.Options, raw_options, display, problems, skip=skip, prefix=where)
        if options is not None:
            specs.append(CheckSpec(kind=str(kind), options=options))
    return tuple(specs)


def _quietly(model: type[_M], value: object) -> _M | None:
    """``value`` validated as ``model``, or None (its problems are reported by the whole file's check)."""
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


def _check_pipeline_rules(data: dict[str, Any], display: str, problems: list[ConfigError]) -> None:
    """Rules across keys of pipeline.yml, for each section that is valid on its own."""
    source = _quietly(SourceSettings, data.get("source"))
    if source is not None and source.branch == source.production_branch:
        problems.append(
            ConfigError(
                display, "source.production_branch", "must differ from source.branch (releases merge into it)"
            )
        )
    approval = _quietly(ApprovalSettings, data.get("approval"))
    if approval is None:
        return
    seen: set[str] = set()
    for index, approver in enumerate(approval.approvers):
        if approver in seen:
            problems.append(
                ConfigError(
                    display, f"approval.approvers[{index}]", "listed twice; each approver counts once"
                )
            )
        seen.add(approver)
    people = len(seen)
    if approval.min_approvals > people:
        problems.append(
            ConfigError(
                display,
                "approval.min_approvals",
                f"must be between 1 and {people} (the number of approvers): "
                f"{approval.min_approvals} distinct people could never approve",
            )
        )


def _check_stage_pair(
    staging: StageSettings, production: StageSettings, config_path: Path, problems: list[ConfigError]
) -> None:
    production_file = str(config_path.parent / "environments" / production.file.name)
    staging_file = str(config_path.parent / "environments" / staging.file.name)
    if staging.app == production.app:
        problems.append(
            ConfigError(production_file, "heroku.app", f"must differ from the staging app ({staging.app})")
        )
    if staging.pipeline is not None and staging.pipeline != production.pipeline:
        problems.append(
            ConfigError(
                staging_file,
                "heroku.pipeline",
                f"must be production's pipeline ({production.pipeline}) or left out: "
                "promotion needs both apps in one Heroku pipeline",
            )
        )


# --- Reading YAML and interpolating -----------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (PyYAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                continue  # unhashable: the base class reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(
    path: Path, display: str, problems: list[ConfigError], *, missing: str
) -> dict[str, Any] | None:
    """The file's top-level mapping (an empty file is an empty one), or None after adding a problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(ConfigError(display, "", missing))
        return None
    except UnicodeDecodeError:
        problems.append(ConfigError(display, "", "cannot read: not UTF-8 text"))
        return None
    except OSError as exc:
        problems.append(ConfigError(display, "", f"cannot read: {exc.strerror or type(exc).__name__}"))
        return None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        context = ""
        if exc.context and exc.context_mark is not None and exc.problem:
            context = f" ({exc.context} at line {exc.context_mark.line + 1})"
        problems.append(
            ConfigError(display, "", f"invalid YAML{where}: {exc.problem or exc.context}{context}")
        )
        return None
    except yaml.YAMLError as exc:
        problems.append(ConfigError(display, "", f"invalid YAML: {type(exc).__name__}"))
        return None
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(ConfigError(display, "", "expected a mapping of keys at the top level"))
        return None
    return data


_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<body>[^{}]*)\}")
_VARIABLE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


def _interpolate(
    data: dict[str, Any], env: Mapping[str, str], display: str, problems: list[ConfigError]
) -> tuple[dict[str, Any], set[Loc]]:
    """``data`` with ``${VAR}``/``${VAR:-default}`` replaced in every string value (keys become
    strings), and the key paths that could not be resolved (each already reported)."""
    unresolved: set[Loc] = set()

    def walk(value: Any, loc: Loc) -> Any:
        if isinstance(value, dict):
            return {str(k): walk(v, (*loc, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*loc, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "$" in value:
            result, problem = _substitute(value, env)
            if problem is None:
                return result
            problems.append(ConfigError(display, _key(loc), problem))
            unresolved.add(loc)
        return value

    return walk(data, ()), unresolved


def _substitute(text: str, env: Mapping[str, str]) -> tuple[str, str | None]:
    """(text with references replaced, None) or (text, the problem). Never quotes a value."""
    out: list[str] = []
    position = 0
    for match in _REFERENCE.finditer(text):
        gap = text[position : match.start()]
        if "${" in gap:
            break
        out.append(gap)
        position = match.end()
        if match.group(0) == "$${":
            out.append("${")
            continue
        variable = _VARIABLE.fullmatch(match.group("body"))
        if variable is None:
            return text, "bad variable reference: write ${NAME} or ${NAME:-default}"
        name, default = variable.group("name"), variable.group("default")
        value = env.get(name)
        if default is not None and not value:
            value = default
        if value is None:
            return (
                text,
                f"${{{name}}} is not set in the environment: set {name}, or write ${{{name}:-default}}",
            )
        out.append(value)
    if "${" in text[position:]:
        return text, "unclosed variable reference: write ${NAME} or ${NAME:-default} ($${ for a literal ${)"
    out.append(text[position:])
    return "".join(out), None


# --- Turning pydantic's errors into ours ------------------------------------------------------


def _validate(
    model: type[_M],
    data: dict[str, Any],
    display: str,
    problems: list[ConfigError],
    *,
    skip: set[Loc],
    prefix: Loc = (),
) -> _M | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # Every list that holds a bad item (at any depth): its "too short" only repeats that.
        item_errors = {
            tuple(e["loc"][:i]) for e in errors for i, part in enumerate(e["loc"]) if isinstance(part, int)
        }
        for error in errors:
            loc = (*prefix, *error["loc"])
            if any(loc[: len(bad)] == bad for bad in skip):
                continue  # its ${VAR} is already reported
            if error["type"] == "too_short" and tuple(error["loc"]) in item_errors:
                continue  # a list whose bad items were dropped: the items' problems say it all
            problems.append(ConfigError(display, _key(loc), _message(error, model, prefix)))
        return None


def _key(loc: Loc) -> str:
    """("checks", 0, "http", "retries") -> "checks[0].http.retries"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_EXPECTED = {
    "string_type": "expected text",
    "string_too_short": "must not be empty",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _message(error: ErrorDetails, root: type[BaseModel], prefix: Loc) -> str:
    kind, ctx, loc = error["type"], error.get("ctx") or {}, tuple(error["loc"])
    if kind == "extra_forbidden":
        return _unknown_key(root, loc, (*prefix, *loc))
    if kind == "missing":
        description = _field(root, loc)
        return "required key is missing" + (f": {description}" if description else "")
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}"
    if kind == "string_type" and isinstance(error["input"], dict) and "approvers" in loc:
        return 'expected a username, account id or "{uuid}": quote a {uuid}, or YAML reads it as a mapping'
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {_kind_of(error['input'])}"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, name = bounds[kind]
        return f"must be {words} {ctx.get(name)}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"expected at most {ctx.get('max_length')} item(s)"
    return error["msg"]


def _kind_of(value: object) -> str:
    """What the YAML held, in YAML's words, without the value itself."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _unknown_key(root: type[BaseModel], loc: Loc, full_loc: Loc) -> str:
    key = str(loc[-1])
    message = "unknown key"
    model = _model_at(root, loc[:-1])
    if model is not None:
        known = list(model.model_fields)
        close = difflib.get_close_matches(key, known, n=1)
        message += (f"; did you mean {close[0]}?" if close else "") + f" (known keys: {', '.join(known)})"
    if any(word in key.lower() for word in _SECRET_WORDS):
        message += f"; secrets come from the environment: set {_secret_variable(full_loc)}"
    return message


def _secret_variable(loc: Loc) -> str:
    key = str(loc[-1]).lower()
    if loc[0] == "webhooks":
        return WEBHOOK_SECRET
    if "bitbucket" in key or loc[0] == "source":
        return "BITBUCKET_TOKEN"
    if "heroku" in key or loc[0] == "heroku":
        return "HEROKU_API_KEY"
    if "database" in key or "db" in key.split("_"):
        return "PIPELINE_DATABASE_URL"
    return "BITBUCKET_TOKEN or HEROKU_API_KEY"


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and Optional[...] down to the type underneath."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            rest = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class found by following ``loc`` (field names, list indexes) from ``root``."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, str):
            if (
                not (isinstance(current, type) and issubclass(current, BaseModel))
                or part not in current.model_fields
            ):
                return None
            current = current.model_fields[part].annotation
        elif get_origin(current) in (list, tuple):
            current = get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _field(root: type[BaseModel], loc: Loc) -> str | None:
    model = _model_at(root, loc[:-1])
    if model is None or str(loc[-1]) not in model.model_fields:
        return None
    return model.model_fields[str(loc[-1])].description


# --- The plan, for people ---------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` with any password (``user:pw@`` or ``?password=``) replaced by ``***``."""
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)[^/?#]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)


def describe(settings: Settings) -> dict[str, Any]:
    """The resolved plan as JSON-serialisable data: secrets shown only as "set"/"missing", durations
    as "30s", passwords in URLs as "***" (and any secret's value, wherever it appears, as "***")."""
    stages = []
    for index, stage in enumerate(settings.stages):
        stages.append(
            {
                "name": stage.name,
                "role": "production" if index == len(settings.stages) - 1 else "staging",
                "file": str(stage.file),
                "app": stage.app,
                "pipeline": stage.pipeline,
                "checks": [
                    {"kind": c.kind, "options": c.options.model_dump(mode="json")} for c in stage.checks
                ],
                "backups": stage.backups.model_dump(mode="json") if stage.backups else None,
                "windows": _windows_plan(stage.windows),
                "rollback": stage.rollback.model_dump(mode="json"),
            }
        )
    source = settings.source.model_dump(mode="json")
    source["url"] = redact_url(source["url"])
    plan: dict[str, Any] = {
        "name": settings.name,
        "config_path": str(settings.config_path),
        "credentials": "none set: `pipeline run` uses the sandbox"
        if settings.sandbox
        else "from the environment",
        "source": source,
        "stages": stages,
        "approval": settings.approval.model_dump(mode="json"),
        "schedule": settings.schedule.model_dump(mode="json"),
        "heroku": {k: redact_url(v) for k, v in settings.heroku.model_dump(mode="json").items()},
        "webhooks": settings.webhooks.model_dump(mode="json") if settings.webhooks else None,
        "secrets": {
            "BITBUCKET_TOKEN": "set" if settings.bitbucket_token else "missing",
            "HEROKU_API_KEY": "set" if settings.heroku_api_key else "missing",
        }
        | (
            {WEBHOOK_SECRET: "set" if settings.webhook_secret else "missing"}
            if settings.webhooks is not None
            else {}
        ),
        "database_url": redact_url(settings.database_url),
        "restore_server": redact_url(settings.restore_server.get_secret_value()),
        "actor": settings.actor,
    }
    return _scrub(plan, [s for s in settings.secrets if len(s) >= 6])


def _windows_plan(windows: WindowsSettings | None) -> dict[str, Any] | None:
    if windows is None:
        return None
    return {
        "timezone": windows.timezone,
        "allow": [
            {
                "days": [DAYS[d] for d in sorted(w.days)],
                "hours": f"{w.hours[0]:%H:%M}-"
                + ("24:00" if w.hours[1] == time(0) else f"{w.hours[1]:%H:%M}"),
            }
            for w in windows.allow
        ],
    }


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
    return value
