"""Hostile input to the real ``pipeline`` command, run as people run it (``python -m pipeline.cli`` in
a process of its own): each is refused with its exit status and ONE line naming the file, key,
option or variable and what is wrong, never a traceback. The billion-laughs file and a 20 MB file
are refused within the time given to the process, under a cap on its address space.

No sandbox is needed: everything here is refused before anything is reached.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 10  # seconds: generous; a refusal takes well under one beside the interpreter's start
ADDRESS_SPACE = 512 * 1024 * 1024  # bytes: enough for Python and the command's imports, not for a bomb
ENV = {
    "BITBUCKET_TOKEN": "bb-token-7f3a9c1e5d",
    "HEROKU_API_KEY": "hk-key-4b8e2d6f0a",
    "BITBUCKET_WEBHOOK_SECRET": "hook-secret-2c9e41f7",
    "PIPELINE_ACTOR": "tests",
}
CONFIG_INVALID = 2
CANNOT_START = 1


def billion_laughs() -> str:
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        lines.append(f"lol{level}: &lol{level} [" + ", ".join([f"*lol{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def memory_cap() -> Callable[[], None]:
    """What the child runs before ``exec``: cap its address space (skip where that cannot be done)."""
    resource = pytest.importorskip("resource", reason="no resource module: rlimits are unavailable here")
    if not hasattr(resource, "RLIMIT_AS"):
        pytest.skip("RLIMIT_AS is unavailable here")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and hard < ADDRESS_SPACE:
        pytest.skip(f"the hard address-space limit ({hard} bytes) is below the cap this test sets")

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, hard))

    return cap


def pipeline(
    *args: str, config: Path, env: dict[str, str] | None = None, capped: bool = False
) -> subprocess.CompletedProcess[str]:
    """``pipeline <args> --config pipeline.yml`` in a process of its own, in the configuration's
    directory, within TIMEOUT seconds (else ``TimeoutExpired`` fails the test), its address space
    capped when ``capped``."""
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **ENV, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args, "--config", config.name],
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=memory_cap() if capped else None,
        cwd=config.parent,
    )


def one_line(run: subprocess.CompletedProcess[str], status: int, prefix: str = "error: ") -> str:
    """The one line the command said what is wrong in (``prefix``), after checking its exit status
    and that nothing else went wrong."""
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, run.stderr
    assert run.returncode == status, f"exit {run.returncode}\n{run.stderr}"
    said = [line for line in run.stderr.splitlines() if line.startswith(prefix)]
    assert len(said) == 1, run.stderr
    return said[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A copy of the shipped configuration."""
    shutil.copy(ROOT / "pipeline.yml", tmp_path / "pipeline.yml")
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    return tmp_path / "pipeline.yml"


# --- 1. Hostile YAML ----------------------------------------------------------------------------


def test_billion_laughs_is_refused_quickly_under_a_memory_cap(config: Path) -> None:
    config.write_text(billion_laughs())
    run = pipeline("config", "check", config=config, capped=True)
    assert one_line(run, CONFIG_INVALID) == (
        "error: pipeline.yml: line 2, column 14: aliases (*name) are not allowed: write the value out in "
        "full (a configuration has no need of anchors and aliases)"
    )
    assert run.stdout == ""


def test_a_20_mb_stage_file_is_refused_quickly_under_a_memory_cap(config: Path) -> None:
    staging = config.parent / "environments" / "staging.yml"
    with staging.open("wb") as file:
        file.write(b"heroku: {app: claims-staging}\n" * 700_000)
    assert staging.stat().st_size > 20_000_000
    run = pipeline("config", "check", config=config, capped=True)
    assert one_line(run, CONFIG_INVALID) == (
        "error: environments/staging.yml: larger than 1 MiB: a configuration file is a few kilobytes; "
        "is this the right file?"
    )


@pytest.mark.parametrize(
    ("where", "content", "expected"),
    [
        (
            "environments/production.yml",
            billion_laughs(),
            "line 2, column 14: aliases (*name) are not allowed",
        ),
        (
            "pipeline.yml",
            "a: " + "[" * 5000 + "]" * 5000 + "\n",
            "line 1, column 67: nested deeper than 64 levels",
        ),
        (
            "environments/staging.yml",
            b"heroku:\n  app: \x00\x01\x02\n",
            "cannot read: binary content (a NUL byte",
        ),
        ("pipeline.yml", "name: caf\u00e9\n".encode("latin-1"), "cannot read: not UTF-8 text"),
        (
            "pipeline.yml",
            "name: !!python/object/apply:os.system [touch pwned]\n",
            "line 1, column 7: tags that build Python objects (!!python/...) are not allowed: write plain",
        ),
        ("environments/staging.yml", "heroku: {app: a}\nheroku: {app: b}\n", "duplicate key 'heroku'"),
    ],
    ids=[
        "billion laughs in a stage file",
        "5000 levels",
        "NUL bytes",
        "Latin-1",
        "a Python tag",
        "a duplicate key",
    ],
)
def test_a_hostile_file_is_one_line_naming_it(
    config: Path, where: str, content: str | bytes, expected: str
) -> None:
    path = config.parent / where
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    line = one_line(pipeline("config", "check", config=config, capped=True), CONFIG_INVALID)
    assert line.startswith(f"error: {where}: ") and expected in line, line
    assert not (config.parent / "pwned").exists()


# --- 2. Absurd values ---------------------------------------------------------------------------


def test_an_absurd_duration_is_one_line_naming_the_key(config: Path) -> None:
    config.write_text(
        config.read_text().replace("poll_interval: 30s", "poll_interval: 99999999999999999999d")
    )
    assert one_line(pipeline("config", "check", config=config), CONFIG_INVALID) == (
        "error: pipeline.yml: schedule.poll_interval: too large: at most 36500 days"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("show", "99999999999999999999999"),
            "Error: Invalid value for 'RELEASE_ID': 99999999999999999999999 is not in the range "
            "1<=x<=2147483647.",
        ),
        (
            ("history", "--limit", "999999999999999999999"),
            "Error: Invalid value for '--limit': 999999999999999999999 is not in the range 1<=x<=2147483647.",
        ),
        (
            ("log", "--limit", "999999999999999999999"),
            "Error: Invalid value for '--limit': 999999999999999999999 is not in the range 1<=x<=2147483647.",
        ),
        (
            ("freeze", "production", "--reason", "x", "--until", "99999999999d"),
            "Error: Invalid value for '--until': too large: at most 36500 days (a freeze that long is no "
            "freeze: leave --until out)",
        ),
        (
            ("freeze", "production", "--reason", "x", "--until", "9999-12-31T23:59-05:00"),
            "Error: Invalid value for '--until': out of range: give a time after the year 1 and before the "
            "year 9999",
        ),
        (
            ("tick", "--settle", "--timeout", "nan"),
            "Error: Invalid value for '--timeout': nan is not a number of seconds",
        ),
        (
            ("tick", "--settle", "--timeout", "inf"),
            "Error: Invalid value for '--timeout': inf is not in the range 1<=x<=604800.",
        ),
        (
            ("tick", "--settle", "--timeout", "-1"),
            "Error: Invalid value for '--timeout': -1.0 is not in the range 1<=x<=604800.",
        ),
        (
            ("rollback", "production", "--reason", "x", "--timeout", "nan"),
            "Error: Invalid value for '--timeout': nan is not a number of seconds",
        ),
        (
            ("rollback", "production", "--reason", "x", "--to", "v99999999999999999999"),
            "Error: Invalid value for '--to': too large: a Heroku release version is at most 2147483647",
        ),
    ],
    ids=[
        "show",
        "history",
        "log",
        "freeze duration",
        "freeze time",
        "nan",
        "inf",
        "negative",
        "rollback nan",
        "--to",
    ],
)
def test_an_absurd_number_on_the_command_line_is_refused_by_click(
    config: Path, args: tuple[str, ...], expected: str
) -> None:
    run = pipeline(*args, config=config)
    assert one_line(run, CONFIG_INVALID, prefix="Error: ") == expected
    assert not (config.parent / ".pipeline").exists()  # refused before anything was opened


# --- 3. Opening the store -----------------------------------------------------------------------


def test_a_store_of_a_newer_version_is_one_line_saying_what_to_do(config: Path, tmp_path: Path) -> None:
    database = tmp_path / "store" / "pipeline.db"
    database.parent.mkdir()
    url = f"sqlite:///{database}"
    assert pipeline("history", config=config, env={"PIPELINE_DATABASE_URL": url}).returncode == 0
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE pipeline_alembic_version SET version_num = 'f00dfeed_newer'")
    run = pipeline("history", config=config, env={"PIPELINE_DATABASE_URL": url})
    assert one_line(run, CANNOT_START, prefix="Error: ") == (
        f"Error: cannot start: store: the store at {url} is at revision f00dfeed_newer, which this version "
        f"does not know (it knows up to {newest_revision()}): upgrade the controller or point "
        "PIPELINE_DATABASE_URL elsewhere"
    )


def test_a_database_the_store_does_not_run_on_is_one_line_naming_the_variable(config: Path) -> None:
    run = pipeline("history", config=config, env={"PIPELINE_DATABASE_URL": "mysql://deploy:pw@db/pipeline"})
    line = one_line(run, CONFIG_INVALID)
    assert line == (
        "error: environment: PIPELINE_DATABASE_URL: unsupported database: the store is SQLite "
        "(sqlite:////abs/path/pipeline.db) or PostgreSQL (postgresql://user:password@host/db; postgres:// "
        "and postgresql+psycopg:// too)"
    )
    assert "pw" not in run.stderr.replace("password", "")


def test_a_sqlite_file_in_a_missing_directory_is_one_line_naming_it(config: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    run = pipeline(
        "history", config=config, env={"PIPELINE_DATABASE_URL": f"sqlite:///{missing}/pipeline.db"}
    )
    assert one_line(run, CONFIG_INVALID) == (
        f"error: environment: PIPELINE_DATABASE_URL: the directory {missing} does not exist: create it, or "
        "correct the path (or unset PIPELINE_DATABASE_URL for the default store, .pipeline/pipeline.db "
        "beside pipeline.yml)"
    )
    assert not (tmp_path / "no").exists()


def test_the_default_store_is_still_made_where_it_belongs(config: Path) -> None:
    run = pipeline("history", config=config)
    assert run.returncode == 0 and run.stdout.strip() == "No releases yet.", run.stderr
    assert (config.parent / ".pipeline" / "pipeline.db").is_file()


def newest_revision() -> str:
    from alembic.script import ScriptDirectory

    from pipeline.store import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head
