"""Configuration: the shipped files load, and every kind of problem is one clear line, all collected."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks import format_duration, http, parse_duration
from pipeline import config
from pipeline.errors import ConfigInvalid

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bb-token-7f3a9c1e5d"
API_KEY = "hk-key-4b8e2d6f0a"
HOOK_SECRET = "hook-secret-2c9e41f7"
ENV = {
    "BITBUCKET_TOKEN": TOKEN,
    "HEROKU_API_KEY": API_KEY,
    "BITBUCKET_WEBHOOK_SECRET": HOOK_SECRET,
    "PIPELINE_ACTOR": "ops",
}

Edit = Callable[[Path], None]


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    """A copy of the shipped pipeline.yml and environments/ in a directory of the test's own."""
    shutil.copy(ROOT / "pipeline.yml", tmp_path / "pipeline.yml")
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    return tmp_path / "pipeline.yml"


def mutate(relative: str, change: Callable[[dict[str, Any]], object]) -> Edit:
    def edit(directory: Path) -> None:
        path = directory / relative
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    return edit


def write(relative: str, text: str) -> Edit:
    def edit(directory: Path) -> None:
        (directory / relative).write_text(text)

    return edit


def remove(relative: str) -> Edit:
    def edit(directory: Path) -> None:
        (directory / relative).unlink()

    return edit


def problems(
    config_path: Path, env: dict[str, str] | None = None, **kwargs: Any
) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigInvalid) as caught:
        config.load(config_path, ENV if env is None else env, **kwargs)
    return [(p.file, p.key, p.message) for p in caught.value.problems]


# --- The shipped files ------------------------------------------------------------------------


def test_the_shipped_files_load_into_settings() -> None:
    settings = config.load(ROOT / "pipeline.yml", ENV)
    assert settings.name == "claims"
    assert settings.config_path == ROOT / "pipeline.yml"
    assert settings.source == config.SourceSettings(
        url="https://api.bitbucket.org",
        workspace="whisper",
        repository="claims",
        branch="develop",
        production_branch="main",
        required_builds=("tests",),
    )
    assert settings.approval.approvers == ("po",) and settings.approval.min_approvals == 1
    assert settings.schedule.poll_interval == timedelta(seconds=30)
    assert settings.heroku.api_url == "https://api.heroku.com"
    assert settings.heroku.data_api_url == "https://api.data.heroku.com"
    assert [s.name for s in settings.stages] == ["staging", "production"]
    staging, production = settings.staging, settings.production
    assert (staging.app, staging.pipeline, staging.backups) == ("claims-staging", "claims", None)
    assert staging.file == ROOT / "environments" / "staging.yml"
    assert (production.app, production.pipeline) == ("claims-production", "claims")
    assert production.backups == config.BackupSettings(
        capture_before_promotion=True, max_age=timedelta(hours=26)
    )
    for stage in settings.stages:
        (spec,) = stage.checks
        assert spec.kind == "http"
        assert spec.options == http.Options.model_validate(
            {"path": "/health", "expect_status": 200, "retries": 5, "interval": "2s", "timeout": "5s"}
        )
        assert (spec.options.retries, spec.options.interval) == (5, timedelta(seconds=2))
    assert settings.bitbucket_token is not None and settings.bitbucket_token.get_secret_value() == TOKEN
    assert settings.heroku_api_key is not None and settings.heroku_api_key.get_secret_value() == API_KEY
    assert settings.database_url == f"sqlite:///{ROOT}/.pipeline/pipeline.db"
    assert settings.actor == "ops"
    assert settings.sandbox is False


def test_the_sandbox_environment_points_the_shipped_files_at_the_sandbox() -> None:
    env = {
        **ENV,
        "BITBUCKET_URL": "http://127.0.0.1:5001",
        "HEROKU_API_URL": "http://127.0.0.1:5000/",
        "HEROKU_DATA_API_URL": "http://127.0.0.1:5002",
    }
    settings = config.load(ROOT / "pipeline.yml", env)
    assert settings.source.url == "http://127.0.0.1:5001"
    assert settings.heroku.api_url == "http://127.0.0.1:5000"  # trailing slash dropped
    assert settings.heroku.data_api_url == "http://127.0.0.1:5002"


def test_defaults_fill_in_what_a_minimal_configuration_leaves_out(tmp_path: Path) -> None:
    (tmp_path / "environments").mkdir()
    (tmp_path / "pipeline.yml").write_text(
        "source: {workspace: acme, repository: shop}\napproval: {approvers: [ann]}\n"
    )
    (tmp_path / "environments" / "staging.yml").write_text("heroku: {app: shop-staging}\n")
    (tmp_path / "environments" / "production.yml").write_text("heroku: {app: shop, pipeline: shop}\n")
    settings = config.load(tmp_path / "pipeline.yml", {"BITBUCKET_TOKEN": TOKEN, "HEROKU_API_KEY": API_KEY})
    assert settings.name == "shop"
    assert settings.source.provider == "bitbucket-cloud"
    assert (settings.source.branch, settings.source.production_branch) == ("develop", "main")
    assert settings.source.required_builds == ()
    assert settings.approval.min_approvals == 1
    assert settings.schedule.poll_interval == timedelta(seconds=30)
    assert settings.heroku == config.HerokuSettings()
    assert (settings.staging.name, settings.staging.pipeline, settings.staging.checks) == (
        "staging",
        None,
        (),
    )
    assert settings.production.backups == config.BackupSettings()
    assert settings.production.backups.max_age == timedelta(hours=26)
    assert settings.database_url == f"sqlite:///{tmp_path.resolve()}/.pipeline/pipeline.db"
    assert settings.actor  # the OS user, or "unknown"


def test_a_check_with_no_options_takes_the_defaults(shipped: Path) -> None:
    shipped.parent.joinpath("environments", "staging.yml").write_text(
        "heroku: {app: a}\nchecks:\n  - http:\n"
    )
    settings = config.load(shipped, ENV)
    assert settings.staging.checks == (config.CheckSpec(kind="http", options=http.Options()),)


def test_environment_overrides(shipped: Path) -> None:
    env = {**ENV, "PIPELINE_DATABASE_URL": "postgresql+psycopg://pipeline:pw@db.internal/pipeline"}
    settings = config.load(shipped, env)
    assert settings.database_url == "postgresql+psycopg://pipeline:pw@db.internal/pipeline"
    assert settings.actor == "ops"


# --- One problem, one line --------------------------------------------------------------------

PROBLEMS: list[tuple[str, Edit, dict[str, str | None], tuple[str, str, str]]] = [
    (
        "unknown key at the top",
        mutate("pipeline.yml", lambda d: d.update(colour="blue")),
        {},
        ("pipeline.yml", "colour", "unknown key (known keys: name, source, stages, approval"),
    ),
    (
        "unknown key in a section",
        mutate("pipeline.yml", lambda d: d["source"].update(brnach="develop")),
        {},
        ("pipeline.yml", "source.brnach", "unknown key; did you mean branch?"),
    ),
    (
        "unknown key in an environment file",
        mutate("environments/staging.yml", lambda d: d["heroku"].update(region="eu")),
        {},
        ("environments/staging.yml", "heroku.region", "unknown key (known keys: app, pipeline)"),
    ),
    (
        "unknown key in a check's options",
        mutate("environments/production.yml", lambda d: d["checks"][0]["http"].update(method="POST")),
        {},
        ("environments/production.yml", "checks[0].http.method", "unknown key"),
    ),
    (
        "a secret in pipeline.yml",
        mutate("pipeline.yml", lambda d: d["source"].update(token="x")),
        {},
        ("pipeline.yml", "source.token", "unknown key"),
    ),
    (
        "a secret in pipeline.yml says which variable",
        mutate("pipeline.yml", lambda d: d["source"].update(password="x")),
        {},
        ("pipeline.yml", "source.password", "secrets come from the environment: set BITBUCKET_TOKEN"),
    ),
    (
        "a secret in an environment file says which variable",
        mutate("environments/production.yml", lambda d: d["heroku"].update(api_key="x")),
        {},
        (
            "environments/production.yml",
            "heroku.api_key",
            "secrets come from the environment: set HEROKU_API_KEY",
        ),
    ),
    (
        "a required key is missing",
        mutate("pipeline.yml", lambda d: d["source"].pop("workspace")),
        {},
        ("pipeline.yml", "source.workspace", "required key is missing: the Bitbucket workspace id"),
    ),
    (
        "wrong type: text for a number",
        mutate("pipeline.yml", lambda d: d["approval"].update(min_approvals="two")),
        {},
        ("pipeline.yml", "approval.min_approvals", "expected a whole number, got text"),
    ),
    (
        "wrong type: text for a list",
        mutate("pipeline.yml", lambda d: d["source"].update(required_builds="tests")),
        {},
        ("pipeline.yml", "source.required_builds", "expected a list, got text"),
    ),
    (
        "wrong type: a list for a mapping",
        mutate("environments/staging.yml", lambda d: d.update(heroku=["claims-staging"])),
        {},
        ("environments/staging.yml", "heroku", "expected a mapping, got a list"),
    ),
    (
        "wrong type: text for true/false",
        mutate(
            "environments/production.yml", lambda d: d["backups"].update(capture_before_promotion="maybe")
        ),
        {},
        ("environments/production.yml", "backups.capture_before_promotion", "expected true or false"),
    ),
    (
        "an unsupported provider",
        mutate("pipeline.yml", lambda d: d["source"].update(provider="github")),
        {},
        ("pipeline.yml", "source.provider", "expected 'bitbucket-cloud'"),
    ),
    (
        "not a URL",
        mutate("pipeline.yml", lambda d: d["heroku"].update(api_url="api.heroku.com")),
        {},
        ("pipeline.yml", "heroku.api_url", "expected an http:// or https:// URL"),
    ),
    (
        "bad duration in pipeline.yml",
        mutate("pipeline.yml", lambda d: d["schedule"].update(poll_interval="soon")),
        {},
        ("pipeline.yml", "schedule.poll_interval", "expected a duration such as 30s, 5m, 26h"),
    ),
    (
        "zero poll interval",
        mutate("pipeline.yml", lambda d: d["schedule"].update(poll_interval="0s")),
        {},
        (
            "pipeline.yml",
            "schedule.poll_interval",
            "expected a duration such as 30s, 5m, 26h (greater than zero)",
        ),
    ),
    (
        "bad duration in an environment file",
        mutate("environments/production.yml", lambda d: d["backups"].update(max_age="26 hours")),
        {},
        ("environments/production.yml", "backups.max_age", "expected a duration such as 30s, 5m, 26h"),
    ),
    (
        "bad duration in a check",
        mutate("environments/staging.yml", lambda d: d["checks"][0]["http"].update(interval="fast")),
        {},
        ("environments/staging.yml", "checks[0].http.interval", "expected a duration such as 30s, 5m, 26h"),
    ),
    (
        "bad check option",
        mutate("environments/staging.yml", lambda d: d["checks"][0]["http"].update(retries=-1)),
        {},
        ("environments/staging.yml", "checks[0].http.retries", "must be at least 0"),
    ),
    (
        "bad check option of the second check",
        mutate("environments/staging.yml", lambda d: d["checks"].append({"http": {"path": "health"}})),
        {},
        ("environments/staging.yml", "checks[1].http.path", "expected a path starting with /"),
    ),
    (
        "unknown check plugin",
        mutate("environments/staging.yml", lambda d: d["checks"].append({"smoke": {"url": "/"}})),
        {},
        (
            "environments/staging.yml",
            "checks[1]",
            "unknown check 'smoke'; known checks: commit, dynos, http, release_phase",
        ),
    ),
    (
        "a check item with two names",
        mutate("environments/staging.yml", lambda d: d["checks"][0].update(dynos={})),
        {},
        ("environments/staging.yml", "checks[0]", "expected a mapping with one key, the check's name"),
    ),
    (
        "a check's options that are no mapping",
        mutate("environments/staging.yml", lambda d: d["checks"][0].update(http="/health")),
        {},
        ("environments/staging.yml", "checks[0].http", "expected a mapping of the check's options"),
    ),
    (
        "min_approvals above the number of approvers",
        mutate("pipeline.yml", lambda d: d["approval"].update(min_approvals=2)),
        {},
        ("pipeline.yml", "approval.min_approvals", "must be between 1 and 1 (the number of approvers)"),
    ),
    (
        "min_approvals zero",
        mutate("pipeline.yml", lambda d: d["approval"].update(min_approvals=0)),
        {},
        ("pipeline.yml", "approval.min_approvals", "must be at least 1"),
    ),
    (
        "no approvers",
        mutate("pipeline.yml", lambda d: d["approval"].update(approvers=[])),
        {},
        ("pipeline.yml", "approval.approvers", "expected at least 1 item"),
    ),
    (
        "an approver listed twice",
        mutate("pipeline.yml", lambda d: d["approval"].update(approvers=["po", "ann", "po"])),
        {},
        ("pipeline.yml", "approval.approvers[2]", "listed twice"),
    ),
    (
        "an approval max_age that is no duration",
        mutate("pipeline.yml", lambda d: d["approval"].update(max_age="three days")),
        {},
        ("pipeline.yml", "approval.max_age", "expected a duration such as 30s, 5m, 26h"),
    ),
    (
        "unlinked_authors neither block nor allow",
        mutate("pipeline.yml", lambda d: d["approval"].update(unlinked_authors="ignore")),
        {},
        ("pipeline.yml", "approval.unlinked_authors", "expected 'block' or 'allow'"),
    ),
    (
        "authors_may_approve not true or false",
        mutate("pipeline.yml", lambda d: d["approval"].update(authors_may_approve="sometimes")),
        {},
        ("pipeline.yml", "approval.authors_may_approve", "expected true or false"),
    ),
    (
        "a webhook port out of range",
        mutate("pipeline.yml", lambda d: d["webhooks"].update(port=70000)),
        {},
        ("pipeline.yml", "webhooks.port", "must be at most 65535"),
    ),
    (
        "a webhook public_url that is no URL",
        mutate("pipeline.yml", lambda d: d["webhooks"].update(public_url="release.example.com/hook")),
        {},
        ("pipeline.yml", "webhooks.public_url", "expected an http:// or https:// URL"),
    ),
    (
        "a webhook secret in pipeline.yml says which variable",
        mutate("pipeline.yml", lambda d: d["webhooks"].update(secret="x")),
        {},
        (
            "pipeline.yml",
            "webhooks.secret",
            "secrets come from the environment: set BITBUCKET_WEBHOOK_SECRET",
        ),
    ),
    (
        "an unquoted {uuid}",
        write("pipeline.yml", "source: {workspace: w, repository: r}\napproval: {approvers: [{abc-123}]}\n"),
        {},
        ("pipeline.yml", "approval.approvers[0]", "quote a {uuid}, or YAML reads it as a mapping"),
    ),
    (
        "the same branch twice",
        mutate("pipeline.yml", lambda d: d["source"].update(production_branch="develop")),
        {},
        ("pipeline.yml", "source.production_branch", "must differ from source.branch"),
    ),
    (
        "three stages",
        mutate("pipeline.yml", lambda d: d.update(stages=["staging", "qa", "production"])),
        {},
        ("pipeline.yml", "stages", "expected exactly two different stages"),
    ),
    (
        "production without heroku.pipeline",
        mutate("environments/production.yml", lambda d: d["heroku"].pop("pipeline")),
        {},
        ("environments/production.yml", "heroku.pipeline", "required for production"),
    ),
    (
        "staging in another Heroku pipeline",
        mutate("environments/staging.yml", lambda d: d["heroku"].update(pipeline="other")),
        {},
        ("environments/staging.yml", "heroku.pipeline", "must be production's pipeline (claims)"),
    ),
    (
        "one app for both stages",
        mutate("environments/production.yml", lambda d: d["heroku"].update(app="claims-staging")),
        {},
        ("environments/production.yml", "heroku.app", "must differ from the staging app (claims-staging)"),
    ),
    (
        "backups on staging",
        mutate("environments/staging.yml", lambda d: d.update(backups={"max_age": "26h"})),
        {},
        ("environments/staging.yml", "backups", "backups apply to the production stage only"),
    ),
    (
        "an unset ${VAR}",
        mutate("pipeline.yml", lambda d: d["source"].update(workspace="${WORKSPACE_NOT_SET}")),
        {},
        ("pipeline.yml", "source.workspace", "${WORKSPACE_NOT_SET} is not set in the environment"),
    ),
    (
        "an unset ${VAR} in a list in a check",
        mutate("environments/staging.yml", lambda d: d["checks"][0]["http"].update(path="/${HEALTH_PATH}")),
        {},
        (
            "environments/staging.yml",
            "checks[0].http.path",
            "set HEALTH_PATH, or write ${HEALTH_PATH:-default}",
        ),
    ),
    (
        "a malformed ${...}",
        mutate("pipeline.yml", lambda d: d["source"].update(branch="${1BRANCH}")),
        {},
        ("pipeline.yml", "source.branch", "bad variable reference: write ${NAME} or ${NAME:-default}"),
    ),
    (
        "an unclosed ${",
        mutate("pipeline.yml", lambda d: d["source"].update(branch="${BRANCH")),
        {},
        ("pipeline.yml", "source.branch", "unclosed variable reference"),
    ),
    (
        "a missing environment file",
        remove("environments/production.yml"),
        {},
        ("environments/production.yml", "", "not found: pipeline.yml lists stage 'production' (production)"),
    ),
    (
        "a missing pipeline.yml",
        remove("pipeline.yml"),
        {},
        ("pipeline.yml", "", "not found"),
    ),
    (
        "a YAML syntax error",
        write("pipeline.yml", "name: claims\nsource:\n  workspace: [whisper\n  repository: claims\n"),
        {},
        ("pipeline.yml", "", "invalid YAML at line 4"),
    ),
    (
        "a YAML syntax error in an environment file",
        write("environments/staging.yml", "heroku:\n  app: claims-staging\n    pipeline: claims\n"),
        {},
        ("environments/staging.yml", "", "invalid YAML at line 3"),
    ),
    (
        "a duplicate key",
        write("environments/staging.yml", "heroku: {app: a}\nheroku: {app: b}\n"),
        {},
        ("environments/staging.yml", "", "invalid YAML at line 2, column 1: duplicate key 'heroku'"),
    ),
    (
        "a file that is not a mapping",
        write("environments/staging.yml", "- heroku\n"),
        {},
        ("environments/staging.yml", "", "expected a mapping of keys at the top level"),
    ),
    (
        "a missing BITBUCKET_TOKEN",
        lambda directory: None,
        {"BITBUCKET_TOKEN": None},
        ("environment", "BITBUCKET_TOKEN", "not set: export the Bitbucket API token"),
    ),
    (
        "an empty HEROKU_API_KEY",
        lambda directory: None,
        {"HEROKU_API_KEY": ""},
        ("environment", "HEROKU_API_KEY", "not set: export a Heroku API key"),
    ),
    (
        "a malformed PIPELINE_DATABASE_URL",
        lambda directory: None,
        {"PIPELINE_DATABASE_URL": "db.internal:5432"},
        ("environment", "PIPELINE_DATABASE_URL", "expected a database URL such as"),
    ),
    (
        "a restore server that is no PostgreSQL URL",
        lambda directory: None,
        {"PIPELINE_RESTORE_DATABASE_URL": "mysql://root@db/scratch"},
        ("environment", "PIPELINE_RESTORE_DATABASE_URL", "expected a PostgreSQL URL such as"),
    ),
    (
        "a deploy window in no time zone",
        mutate(
            "environments/production.yml",
            lambda d: d.update(windows={"timezone": "Mars/Olympus", "allow": [{"days": ["mon"]}]}),
        ),
        {},
        ("environments/production.yml", "windows.timezone", "not a time zone: use an IANA name"),
    ),
    (
        "a deploy window on no day of the week",
        mutate(
            "environments/staging.yml", lambda d: d.update(windows={"allow": [{"days": ["mon", "someday"]}]})
        ),
        {},
        ("environments/staging.yml", "windows.allow[0].days[1]", "expected a day of the week: mon, tue"),
    ),
    (
        "deploy window hours that are no hours",
        mutate(
            "environments/production.yml",
            lambda d: d.update(windows={"allow": [{"days": ["mon"], "hours": "9-5"}]}),
        ),
        {},
        ("environments/production.yml", "windows.allow[0].hours", 'expected hours such as "09:00-17:00"'),
    ),
    (
        "a deploy window that crosses midnight",
        mutate(
            "environments/production.yml",
            lambda d: d.update(windows={"allow": [{"days": ["fri"], "hours": "22:00-02:00"}]}),
        ),
        {},
        ("environments/production.yml", "windows.allow[0].hours", "does not cross midnight: use two"),
    ),
    (
        "deploy windows without a window",
        mutate("environments/production.yml", lambda d: d.update(windows={"timezone": "UTC", "allow": []})),
        {},
        ("environments/production.yml", "windows.allow", "expected at least 1 item"),
    ),
    (
        "a migration pattern that is no regular expression",
        mutate(
            "environments/production.yml", lambda d: d.update(rollback={"migration_pattern": "(applying"})
        ),
        {},
        ("environments/production.yml", "rollback.migration_pattern", "not a regular expression"),
    ),
    (
        "restore checks that are not a list",
        mutate("environments/production.yml", lambda d: d["backups"].update(restore_checks="SELECT 1")),
        {},
        ("environments/production.yml", "backups.restore_checks", "expected a list, got text"),
    ),
]


@pytest.mark.parametrize(
    ("edit", "env", "expected"), [case[1:] for case in PROBLEMS], ids=[c[0] for c in PROBLEMS]
)
def test_each_problem_is_one_line_naming_file_key_and_fix(
    shipped: Path, edit: Edit, env: dict[str, str | None], expected: tuple[str, str, str]
) -> None:
    edit(shipped.parent)
    environment = {k: v for k, v in {**ENV, **env}.items() if v is not None}
    found = problems(shipped, environment)
    assert len(found) == 1, found
    ((file, key, message),) = found
    expected_file, expected_key, expected_message = expected
    if expected_file != "environment":
        expected_file = str(shipped.parent / expected_file)
    assert (file, key) == (expected_file, expected_key)
    assert expected_message in message
    assert "\n" not in message


def test_all_problems_are_collected_across_files(shipped: Path) -> None:
    directory = shipped.parent
    mutate("pipeline.yml", lambda d: d["source"].update(brnach="x"))(directory)
    mutate("pipeline.yml", lambda d: d["approval"].update(min_approvals=3))(directory)
    mutate("pipeline.yml", lambda d: d["schedule"].update(poll_interval="often"))(directory)
    mutate("environments/staging.yml", lambda d: d["checks"].append({"smoke": {}}))(directory)
    mutate("environments/staging.yml", lambda d: d["checks"][0]["http"].update(retries="many"))(directory)
    mutate("environments/production.yml", lambda d: d["heroku"].pop("pipeline"))(directory)
    mutate("environments/production.yml", lambda d: d["backups"].update(max_age="a day"))(directory)
    found = [(Path(file).name, key) for file, key, _ in problems(shipped, {})]
    files = [file for file, _ in found]
    assert files == sorted(files, key=["pipeline.yml", "staging.yml", "production.yml", "environment"].index)
    assert sorted(found) == sorted(
        [
            ("pipeline.yml", "schedule.poll_interval"),
            ("pipeline.yml", "source.brnach"),
            ("pipeline.yml", "approval.min_approvals"),
            ("staging.yml", "checks[0].http.retries"),
            ("staging.yml", "checks[1]"),
            ("production.yml", "backups.max_age"),
            ("production.yml", "heroku.pipeline"),
            ("environment", "BITBUCKET_TOKEN"),
            ("environment", "HEROKU_API_KEY"),
        ]
    )


def test_the_error_reads_one_problem_per_line(shipped: Path) -> None:
    mutate("pipeline.yml", lambda d: d["source"].update(brnach="x"))(shipped.parent)
    with pytest.raises(ConfigInvalid) as caught:
        config.load(shipped, {"HEROKU_API_KEY": API_KEY})
    assert str(caught.value).splitlines() == [
        f"{shipped}: source.brnach: unknown key; did you mean branch? (known keys: provider, url, workspace, "
        "repository, branch, production_branch, required_builds, hotfix_branches)",
        "environment: BITBUCKET_TOKEN: " + config.SECRET_HINTS["BITBUCKET_TOKEN"],
    ]


def test_stage_files_are_still_checked_when_pipeline_yml_has_problems(shipped: Path) -> None:
    mutate("pipeline.yml", lambda d: d["source"].update(url="nowhere"))(shipped.parent)
    remove("environments/staging.yml")(shipped.parent)
    keys = [(Path(file).name, key) for file, key, _ in problems(shipped)]
    assert keys == [("pipeline.yml", "source.url"), ("staging.yml", "")]


def test_a_relative_config_path_names_relative_files(shipped: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(shipped.parent)
    remove("environments/staging.yml")(shipped.parent)
    assert [file for file, _, _ in problems(Path("pipeline.yml"))] == ["environments/staging.yml"]
    settings_dir = shipped.parent.resolve()
    write("environments/staging.yml", "heroku: {app: claims-staging}\n")(shipped.parent)
    settings = config.load(Path("pipeline.yml"), ENV)
    assert settings.config_path == settings_dir / "pipeline.yml"
    assert settings.staging.file == settings_dir / "environments" / "staging.yml"


# --- Secrets ----------------------------------------------------------------------------------


def test_secrets_are_not_required_to_read_the_store(shipped: Path) -> None:
    settings = config.load(shipped, {}, require_secrets=False)
    assert settings.bitbucket_token is None and settings.heroku_api_key is None
    assert settings.sandbox is True
    assert [(p.file, p.key) for p in config.missing_secrets(settings)] == [
        ("environment", "BITBUCKET_TOKEN"),
        ("environment", "HEROKU_API_KEY"),
        ("environment", "BITBUCKET_WEBHOOK_SECRET"),  # the shipped pipeline.yml has webhooks:
    ]
    assert config.missing_secrets(config.load(shipped, ENV)) == []


def test_deploy_windows_and_the_restore_server_resolve(shipped: Path) -> None:
    windows = {"timezone": "Europe/Amsterdam", "allow": [{"days": ["Monday", "fri"], "hours": "09:00-24:00"}]}
    mutate("environments/production.yml", lambda d: d.update(windows=windows))(shipped.parent)
    env = {**ENV, "PIPELINE_RESTORE_DATABASE_URL": "postgresql://drill:restore-pw-9@verify.internal/postgres"}
    settings = config.load(shipped, env)
    assert settings.production.windows is not None and settings.staging.windows is None
    resolved = settings.production.windows.windows()
    assert resolved.zone_name == "Europe/Amsterdam" and resolved.allow[0].days == frozenset({0, 4})
    assert "restore-pw-9" in settings.secrets  # blanked in every log line
    plan = config.describe(settings)
    assert plan["restore_server"] == "postgresql://drill:***@verify.internal/postgres"
    assert plan["stages"][1]["windows"] == {
        "timezone": "Europe/Amsterdam",
        "allow": [{"days": ["mon", "fri"], "hours": "09:00-24:00"}],
    }
    assert "restore-pw-9" not in json.dumps(plan)


def test_approval_max_age_can_be_switched_off_only_explicitly(shipped: Path) -> None:
    assert config.load(shipped, ENV).approval.max_age == timedelta(hours=72)
    mutate("pipeline.yml", lambda d: d["approval"].pop("max_age"))(shipped.parent)
    assert config.load(shipped, ENV).approval.max_age == timedelta(hours=72)  # the default
    for off in ("never", None):
        mutate("pipeline.yml", lambda d, off=off: d["approval"].update(max_age=off))(shipped.parent)
        assert config.load(shipped, ENV).approval.max_age is None


def test_the_webhook_secret_is_needed_only_with_webhooks(shipped: Path) -> None:
    without = {k: v for k, v in ENV.items() if k != "BITBUCKET_WEBHOOK_SECRET"}
    settings = config.load(shipped, without)  # tick and the reading commands need no webhook secret
    (problem,) = config.missing_webhook_secret(settings)
    assert problem.key == "BITBUCKET_WEBHOOK_SECRET" and "signed" in problem.message
    mutate("pipeline.yml", lambda d: d.pop("webhooks"))(shipped.parent)
    assert config.missing_webhook_secret(config.load(shipped, without)) == []


def test_a_secret_is_never_echoed_in_an_error(shipped: Path) -> None:
    directory = shipped.parent
    mutate("pipeline.yml", lambda d: d["source"].update(token=TOKEN, url="${BITBUCKET_TOKEN}"))(directory)
    mutate("pipeline.yml", lambda d: d["approval"].update(min_approvals="${HEROKU_API_KEY}"))(directory)
    mutate("environments/staging.yml", lambda d: d["heroku"].update(api_key=API_KEY))(directory)
    mutate("environments/staging.yml", lambda d: d["checks"][0]["http"].update(expect_status=API_KEY))(
        directory
    )
    with pytest.raises(ConfigInvalid) as caught:
        config.load(shipped, {**ENV, "PIPELINE_DATABASE_URL": f"postgres:{API_KEY}@db"})
    text = str(caught.value)
    assert len(caught.value.problems) == 6
    assert TOKEN not in text and API_KEY not in text


def test_settings_repr_shows_no_secret_and_no_database_password(shipped: Path) -> None:
    env = {**ENV, "PIPELINE_DATABASE_URL": "postgresql://pipeline:db-password-1@db/pipeline"}
    text = repr(config.load(shipped, env))
    assert TOKEN not in text and API_KEY not in text and "db-password-1" not in text


# --- The plan ---------------------------------------------------------------------------------


def test_describe_is_the_resolved_plan_as_json(shipped: Path) -> None:
    mutate("pipeline.yml", lambda d: d["source"].update(url="https://bitbucket.example/${HEROKU_API_KEY}"))(
        shipped.parent
    )
    env = {**ENV, "PIPELINE_DATABASE_URL": "postgresql+psycopg://pipeline:db-password-1@db:5432/pipeline"}
    plan = config.describe(config.load(shipped, env))
    text = json.dumps(plan)
    assert TOKEN not in text and API_KEY not in text and "db-password-1" not in text
    assert plan["secrets"] == {
        "BITBUCKET_TOKEN": "set",
        "HEROKU_API_KEY": "set",
        "BITBUCKET_WEBHOOK_SECRET": "set",
    }
    assert HOOK_SECRET not in text
    assert plan["webhooks"] == {"host": "127.0.0.1", "port": 8765, "public_url": None}
    assert plan["approval"] == {
        "approvers": ["po"],
        "min_approvals": 1,
        "max_age": "3d",
        "authors_may_approve": False,
        "unlinked_authors": "block",
    }
    assert plan["database_url"] == "postgresql+psycopg://pipeline:***@db:5432/pipeline"
    assert plan["source"]["url"] == "https://bitbucket.example/***"
    assert plan["schedule"] == {"poll_interval": "30s", "lease": "5m", "effect_grace": "2m"}
    assert (
        plan["name"] == "claims" and plan["credentials"] == "from the environment" and plan["actor"] == "ops"
    )
    staging, production = plan["stages"]
    assert (staging["name"], staging["role"], staging["app"], staging["backups"]) == (
        "staging",
        "staging",
        "claims-staging",
        None,
    )
    assert staging["checks"] == [
        {
            "kind": "http",
            "options": {
                "retries": 5,
                "interval": "2s",
                "backoff": 1.0,
                "soak": "0s",
                "path": "/health",
                "expect_status": 200,
                "body_contains": None,
                "expect_json": None,
                "timeout": "5s",
                "latency_budget": None,
            },
        }
    ]
    assert (production["role"], production["pipeline"]) == ("production", "claims")
    assert production["backups"] == {
        "capture_before_promotion": True,
        "max_age": "26h",
        "capture_timeout": "6h",
        "restore_checks": [],
    }


def test_describe_says_which_secret_is_missing(shipped: Path) -> None:
    plan = config.describe(config.load(shipped, {"HEROKU_API_KEY": API_KEY}, require_secrets=False))
    assert plan["secrets"] == {
        "BITBUCKET_TOKEN": "missing",
        "HEROKU_API_KEY": "set",
        "BITBUCKET_WEBHOOK_SECRET": "missing",
    }
    assert plan["credentials"] == "from the environment"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:////srv/pipeline/.pipeline/pipeline.db", "sqlite:////srv/pipeline/.pipeline/pipeline.db"),
        ("postgresql://u:p%40ss@db/x", "postgresql://u:***@db/x"),
        ("postgresql://u:p@ss@db/x", "postgresql://u:***@db/x"),
        ("postgresql://u@db/x", "postgresql://u@db/x"),
        (
            "postgresql://db/x?user=u&password=secret&sslmode=require",
            "postgresql://db/x?user=u&password=***&sslmode=require",
        ),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert config.redact_url(url) == shown


# --- Interpolation and durations --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "env", "result"),
    [
        ("${CI_KEY}", {"CI_KEY": "tests"}, "tests"),
        ("${CI_KEY:-build}", {}, "build"),
        ("${CI_KEY:-build}", {"CI_KEY": ""}, "build"),
        ("${CI_KEY:-build}", {"CI_KEY": "lint"}, "lint"),
        ("ci/${CI_KEY}/${STEP:-unit}", {"CI_KEY": "bb"}, "ci/bb/unit"),
        ("${CI_KEY:-}x", {}, "x"),
        ("$${CI_KEY}", {"CI_KEY": "tests"}, "${CI_KEY}"),
        ("cost $5", {}, "cost $5"),
    ],
)
def test_interpolation_in_string_values(shipped: Path, value: str, env: dict[str, str], result: str) -> None:
    mutate("pipeline.yml", lambda d: d["source"].update(required_builds=[value]))(shipped.parent)
    assert config.load(shipped, {**ENV, **env}).source.required_builds == (result,)


def test_interpolated_text_is_then_validated_as_its_key_expects(shipped: Path) -> None:
    mutate("environments/staging.yml", lambda d: d["checks"][0]["http"].update(retries="${RETRIES:-7}"))(
        shipped.parent
    )
    assert config.load(shipped, ENV).staging.checks[0].options.retries == 7
    found = problems(shipped, {**ENV, "RETRIES": "many"})
    assert [(key, message) for _, key, message in found] == [
        ("checks[0].http.retries", "expected a whole number, got text")
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("26h", timedelta(hours=26)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("250ms", timedelta(milliseconds=250)),
        ("1.5s", timedelta(seconds=1.5)),
        ("30", timedelta(seconds=30)),
        (30, timedelta(seconds=30)),
        (2.5, timedelta(seconds=2.5)),
        (0, timedelta(0)),
    ],
)
def test_durations(text: str | int | float, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize(
    "text", ["", "soon", "26 hours", "1m1h", "1h1h", "-5", -5, "5x", "h", "1h 30m", True, None, []]
)
def test_anything_else_is_not_a_duration(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration such as 30s, 5m, 26h"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(seconds=30), "30s"),
        (timedelta(hours=26), "26h"),
        (timedelta(days=2), "2d"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(milliseconds=1500), "1s500ms"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
