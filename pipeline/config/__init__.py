"""Configuration as code: ``pipeline.yml``, ``environments/<stage>.yml`` and the environment, read
once into frozen, typed :class:`Settings`.

This package is the only place of the product that reads environment variables:
:mod:`pipeline.config.environment` reads them (the secrets, ``PIPELINE_DATABASE_URL``,
``PIPELINE_ACTOR``, ``PIPELINE_RESTORE_DATABASE_URL``, ``PIPELINE_CRASH_AT``, and whatever
``${VAR}`` / ``${VAR:-default}`` references in the files' string values name).

:func:`load` validates everything before anything starts and either returns :class:`Settings` or
raises :class:`~pipeline.errors.ConfigInvalid` listing EVERY problem found, one line each:
``<file>: <key.path>: <what is expected / what to do>`` (``checks[0].http.retries``). Problems
with environment variables name the file ``environment``. No message repeats a configured value,
so a secret pasted in the wrong place is never echoed. :func:`describe` renders the resolved plan
for ``pipeline config check``.

The modules: ``files`` reads the YAML (refusing hostile files) and interpolates, ``models`` holds the
files' shapes and their rules, ``patterns`` finds regular expressions liable to catastrophic
backtracking, ``messages`` turns pydantic's errors into our lines, ``shown`` keeps what they repeat
short and on one line, ``environment`` reads the variables, ``settings`` holds what :func:`load`
(here) returns, ``report`` renders it for people.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

import checks
from pipeline.config import environment
from pipeline.config.environment import DEFAULT_RESTORE_SERVER, ENVIRONMENT, SECRET_HINTS, WEBHOOK_SECRET
from pipeline.config.files import interpolate, read_yaml
from pipeline.config.messages import Loc, key_path, validate
from pipeline.config.models import (
    DAYS,
    MIGRATION_PATTERN,
    ApprovalSettings,
    BackupSettings,
    HerokuSettings,
    PipelineFile,
    ProductionFile,
    RollbackSettings,
    ScheduleSettings,
    SourceSettings,
    Stages,
    StagingFile,
    WebhookSettings,
    WindowSettings,
    WindowsSettings,
    backups_on_staging,
)
from pipeline.config.report import describe, redact_url
from pipeline.config.settings import (
    CheckSpec,
    Settings,
    StageSettings,
    missing_secrets,
    missing_webhook_secret,
)
from pipeline.config.shown import shown
from pipeline.errors import ConfigError, ConfigInvalid


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
    environ = environment.variables(env, overrides)
    problems: list[ConfigError] = []
    display = str(config_path)

    pipeline_file: PipelineFile | None = None
    stage_names: tuple[str, ...] = ()
    data = read_yaml(
        config_path,
        display,
        problems,
        missing="not found: run from the directory holding pipeline.yml, or give its path",
    )
    if data is not None:
        data, unresolved = interpolate(data, environ, display, problems)
        pipeline_file = validate(PipelineFile, data, display, problems, skip=unresolved)
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

    from_environment = environment.read(environ, config_path, problems, require_secrets=require_secrets)

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
        bitbucket_token=from_environment.bitbucket_token,
        bitbucket_email=from_environment.bitbucket_email,
        heroku_api_key=from_environment.heroku_api_key,
        database_url=from_environment.database_url,
        actor=from_environment.actor,
        crash_at=from_environment.crash_at,
        webhooks=pipeline_file.webhooks,
        webhook_secret=from_environment.webhook_secret,
        restore_server=from_environment.restore_server,
    )


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
    data = read_yaml(
        path,
        display,
        problems,
        missing=f"not found: pipeline.yml lists stage {name!r} ({role}); create this file or fix stages",
    )
    if data is None:
        return None
    data, unresolved = interpolate(data, env, display, problems)
    before = len(problems)
    rule_problems: list[ConfigError] = []
    model: type[StagingFile | ProductionFile] = ProductionFile if is_production else StagingFile
    stage_file = validate(model, data, display, problems, skip=unresolved, rule_problems=rule_problems)
    raw_checks = data.get("checks")
    specs = _check_specs(raw_checks, display, unresolved, problems) if isinstance(raw_checks, list) else ()
    if not is_production:
        problems.extend(backups_on_staging(data, display))
    problems.extend(rule_problems)
    if stage_file is None or len(problems) != before:
        return None
    return StageSettings(
        name=name,
        file=path.resolve(),
        app=stage_file.heroku.app,
        pipeline=stage_file.heroku.pipeline,
        checks=specs,
        backups=stage_file.backups,
        windows=stage_file.windows,
        rollback=stage_file.rollback,
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
                    key_path(where),
                    f"expected a mapping with one key, the check's name (one of: {', '.join(known)}), "
                    "e.g. - http: {path: /health}",
                )
            )
            continue
        ((kind, raw_options),) = item.items()
        try:
            if str(kind) != shown(kind):  # a name no check has: said without repeating it whole
                raise checks.UnknownCheck(shown(kind))
            plugin = checks.load_plugin(str(kind))
        except checks.UnknownCheck as exc:
            problems.append(ConfigError(display, key_path(where), str(exc)))
            continue
        where = (*where, str(kind))
        if raw_options is None:
            raw_options = {}
        if not isinstance(raw_options, dict):
            problems.append(
                ConfigError(
                    display,
                    key_path(where),
                    "expected a mapping of the check's options (or nothing, for defaults)",
                )
            )
            continue
        options = validate(plugin.Options, raw_options, display, problems, skip=skip, prefix=where)
        if options is not None:
            specs.append(CheckSpec(kind=str(kind), options=options))
    return tuple(specs)


def _check_stage_pair(
    staging: StageSettings, production: StageSettings, config_path: Path, problems: list[ConfigError]
) -> None:
    production_file = str(config_path.parent / "environments" / production.file.name)
    staging_file = str(config_path.parent / "environments" / staging.file.name)
    if staging.app == production.app:
        problems.append(
            ConfigError(
                production_file, "heroku.app", f"must differ from the staging app ({shown(staging.app)})"
            )
        )
    if staging.pipeline is not None and staging.pipeline != production.pipeline:
        problems.append(
            ConfigError(
                staging_file,
                "heroku.pipeline",
                f"must be production's pipeline ({shown(production.pipeline)}) or left out: "
                "promotion needs both apps in one Heroku pipeline",
            )
        )


# What the product, its runbooks and tests import from pipeline.config, wherever it is defined.
__all__ = [
    "DAYS",
    "DEFAULT_RESTORE_SERVER",
    "ENVIRONMENT",
    "MIGRATION_PATTERN",
    "SECRET_HINTS",
    "WEBHOOK_SECRET",
    "ApprovalSettings",
    "BackupSettings",
    "CheckSpec",
    "HerokuSettings",
    "RollbackSettings",
    "ScheduleSettings",
    "Settings",
    "SourceSettings",
    "StageSettings",
    "WebhookSettings",
    "WindowSettings",
    "WindowsSettings",
    "describe",
    "load",
    "missing_secrets",
    "missing_webhook_secret",
    "redact_url",
]
