"""The environment variables the configuration reads: the secrets, ``PIPELINE_DATABASE_URL``,
``PIPELINE_ACTOR``, ``PIPELINE_CRASH_AT`` and ``PIPELINE_RESTORE_DATABASE_URL``, each checked, and
the hints a missing secret's problem gives. Problems with them name the file ``environment``.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from pipeline.errors import ConfigError

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
