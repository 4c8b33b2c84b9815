"""The environment variables the configuration reads, each checked. This is the only module of the
product that reads the environment (:func:`variables`). It reads:

- ``BITBUCKET_TOKEN``, ``HEROKU_API_KEY`` and ``BITBUCKET_WEBHOOK_SECRET``: the secrets. They never
  come from a file; a key that looks like a secret in a file is an error saying which variable to set.
- ``BITBUCKET_EMAIL``: set, ``BITBUCKET_TOKEN`` is an Atlassian account's API token and this is the
  account's e-mail (Bitbucket takes such a token as Basic ``email:token``); unset, it is a workspace,
  project or repository access token (sent as Bearer).
- ``PIPELINE_DATABASE_URL`` (default ``sqlite:///<config dir>/.pipeline/pipeline.db``) and
  ``PIPELINE_ACTOR`` (default the OS user): where history is kept and who "I" am in it. The store
  is SQLite or PostgreSQL (:data:`DATABASE_SCHEMES`); a SQLite file's directory must exist, but the
  default's, which the store makes when it is first opened.
- ``PIPELINE_RESTORE_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``):
  a PostgreSQL server where the restore drill may create (and drop) scratch databases.
- ``PIPELINE_CRASH_AT``: crash points, for crash drills and tests.
- whatever ``${VAR}`` / ``${VAR:-default}`` references in the files' string values name
  (``$${`` is a literal ``${``; :mod:`pipeline.config.files` replaces them).

Problems with them name the file ``environment``.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from pipeline.config.shown import shown
from pipeline.errors import ConfigError

ENVIRONMENT = "environment"
"""The "file" that problems with environment variables name."""

SECRET_HINTS = {
    "BITBUCKET_TOKEN": (
        "not set: export the Bitbucket API token of the controller's account, with BITBUCKET_EMAIL set to "
        "that account's e-mail, or a repository, project or workspace access token alone (it reads the "
        "repository, posts statuses, pushes release branches, opens and merges pull requests); "
        "`pipeline sandbox env` prints the sandbox's"
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


@dataclass(frozen=True)
class Environment:
    """What the environment says, checked: the secrets (None when unset), where history is kept, who
    "I" am, the crash points and the restore drill's server. ``repr`` shows no secret and no URL."""

    bitbucket_token: SecretStr | None
    bitbucket_email: str | None
    heroku_api_key: SecretStr | None
    webhook_secret: SecretStr | None
    database_url: str = field(repr=False)
    actor: str
    crash_at: tuple[str, ...]
    restore_server: SecretStr = field(repr=False)


def variables(env: Mapping[str, str] | None, overrides: Mapping[str, str] | None) -> Mapping[str, str]:
    """The variables the configuration sees: ``env`` (default ``os.environ``), ``overrides`` winning."""
    return {**(os.environ if env is None else env), **(overrides or {})}


def read(
    env: Mapping[str, str], config_path: Path, problems: list[ConfigError], *, require_secrets: bool
) -> Environment:
    """The variables of :class:`Environment` from ``env``, adding a problem for each malformed one (and,
    when ``require_secrets``, for a missing BITBUCKET_TOKEN or HEROKU_API_KEY)."""
    bitbucket_token = _secret(env, "BITBUCKET_TOKEN")
    heroku_api_key = _secret(env, "HEROKU_API_KEY")
    webhook_secret = _secret(env, WEBHOOK_SECRET)
    if require_secrets:
        problems.extend(unset_secrets(bitbucket_token, heroku_api_key))
    database_url = _database_url(env, config_path, problems)
    restore_server = _restore_server(env, problems)
    crash_at = _crash_points(env, problems)
    return Environment(
        bitbucket_token=bitbucket_token,
        bitbucket_email=_email(env, problems),
        heroku_api_key=heroku_api_key,
        webhook_secret=webhook_secret,
        database_url=database_url,
        actor=_actor(env),
        crash_at=crash_at,
        restore_server=restore_server,
    )


def unset_secrets(bitbucket_token: SecretStr | None, heroku_api_key: SecretStr | None) -> list[ConfigError]:
    """A problem for each of the two secrets every command that reaches Bitbucket or Heroku needs and
    that is not set."""
    found = {"BITBUCKET_TOKEN": bitbucket_token, "HEROKU_API_KEY": heroku_api_key}
    return [
        ConfigError(ENVIRONMENT, name, SECRET_HINTS[name]) for name, value in found.items() if value is None
    ]


def _secret(env: Mapping[str, str], name: str) -> SecretStr | None:
    value = env.get(name, "").strip()
    return SecretStr(value) if value else None


def _email(env: Mapping[str, str], problems: list[ConfigError]) -> str | None:
    value = env.get("BITBUCKET_EMAIL", "").strip()
    if not value:
        return None
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        problems.append(
            ConfigError(
                ENVIRONMENT,
                "BITBUCKET_EMAIL",
                "expected the e-mail of the Atlassian account BITBUCKET_TOKEN (an API token) belongs to; "
                "unset it when BITBUCKET_TOKEN is a workspace, project or repository access token",
            )
        )
        return None
    return value


def _database_url(env: Mapping[str, str], config_path: Path, problems: list[ConfigError]) -> str:
    default = config_path.resolve().parent / ".pipeline" / "pipeline.db"
    value = env.get("PIPELINE_DATABASE_URL", "").strip()
    if not value:
        return f"sqlite:///{default}"  # its directory is made when the store is first opened
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", value)
    problem: str | None
    if scheme is None:
        problem = (
            "expected a database URL such as sqlite:////abs/path/pipeline.db or "
            "postgresql+psycopg://user:password@host/db (or unset it for the default SQLite file)"
        )
    elif scheme.group(1) not in DATABASE_SCHEMES:
        problem = (
            "unsupported database: the store is SQLite (sqlite:////abs/path/pipeline.db) or PostgreSQL "
            "(postgresql://user:password@host/db; postgres:// and postgresql+psycopg:// too)"
        )
    elif scheme.group(1).startswith("sqlite"):
        problem = _sqlite_directory_problem(value[scheme.end() :], default)
    else:
        problem = _port_problem(value)
    if problem is not None:
        problems.append(ConfigError(ENVIRONMENT, "PIPELINE_DATABASE_URL", problem))
    return value


DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgres", "postgresql", "postgresql+psycopg")
"""The URL schemes of the databases the store runs on (SQLite, and PostgreSQL through psycopg 3)."""


def _sqlite_directory_problem(rest: str, default: Path) -> str | None:
    """What is wrong with the directory of a SQLite URL's file (``rest``: the URL after ``sqlite://``),
    or None. Its directory must exist, so that a typo does not start a new, empty history somewhere;
    the default store's directory is made by the product, and so may be missing."""
    database = unquote(rest.split("?", 1)[0].partition("/")[2])
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    file = Path(database)
    if file.resolve() == default:
        return None
    if not file.parent.is_dir():
        return (
            f"the directory {shown(file.parent, limit=500)} does not exist: create it, or correct the "
            "path (or unset PIPELINE_DATABASE_URL for the default store, .pipeline/pipeline.db beside "
            "pipeline.yml)"
        )
    return None


def _port_problem(url: str) -> str | None:
    try:
        _ = urlsplit(url).port
    except ValueError:
        return (
            "expected a PostgreSQL URL such as postgresql://user:password@host:5432/db (a port is a "
            "number from 0 to 65535; an IPv6 host is written in brackets)"
        )
    return None


def _restore_server(env: Mapping[str, str], problems: list[ConfigError]) -> SecretStr:
    restore = env.get("PIPELINE_RESTORE_DATABASE_URL", "").strip()
    if restore and not re.match(r"postgres(ql)?://", restore):
        problems.append(
            ConfigError(
                ENVIRONMENT,
                "PIPELINE_RESTORE_DATABASE_URL",
                "expected a PostgreSQL URL such as postgresql://user@host:5432/postgres, a server where "
                "the restore drill may create scratch databases (or unset it for the local server)",
            )
        )
    return _secret(env, "PIPELINE_RESTORE_DATABASE_URL") or SecretStr(DEFAULT_RESTORE_SERVER)


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
