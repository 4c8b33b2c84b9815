"""Hostile configuration files and absurd values: each is refused with one clear problem naming the
file (and the key, or the line), quickly, before it can cost much time or memory; none crashes."""

from __future__ import annotations

import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks import MAX_DURATION, DurationTooLong, format_duration, parse_duration
from pipeline import config
from pipeline.config.files import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES, read_yaml
from pipeline.errors import ConfigError, ConfigInvalid

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "BITBUCKET_TOKEN": "bb-token-7f3a9c1e5d",
    "HEROKU_API_KEY": "hk-key-4b8e2d6f0a",
    "BITBUCKET_WEBHOOK_SECRET": "hook-secret-2c9e41f7",
    "PIPELINE_ACTOR": "ops",
}


def billion_laughs(levels: int = 9) -> str:
    """The "billion laughs" document: each level lists the one before nine times (9**levels "lol"s
    once expanded), in a few hundred bytes."""
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"lol{level}: &lol{level} [" + ", ".join([f"*lol{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pipeline.yml", tmp_path / "pipeline.yml")
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    return tmp_path / "pipeline.yml"


def problems(config_path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigInvalid) as caught:
        config.load(config_path, ENV if env is None else env)
    return [str(p) for p in caught.value.problems]


def read(tmp_path: Path, content: str | bytes) -> tuple[dict[str, Any] | None, list[str]]:
    path = tmp_path / "hostile.yml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    found: list[ConfigError] = []
    data = read_yaml(path, "hostile.yml", found, missing="not found")
    return data, [str(p) for p in found]


# --- Hostile YAML -------------------------------------------------------------------------------


HOSTILE: list[tuple[str, str | bytes, str]] = [
    (
        "billion laughs",
        billion_laughs(),
        "hostile.yml: line 2, column 14: aliases (*name) are not allowed: write the value out in full "
        "(a configuration has no need of anchors and aliases)",
    ),
    ("one alias", "a: &x 1\nb: *x\n", "hostile.yml: line 2, column 4: aliases (*name) are not allowed"),
    (
        "a merge key",
        "base: &b {x: 1}\nother:\n  <<: *b\n",
        "line 3, column 7: aliases (*name) are not allowed",
    ),
    (
        "5,000 levels of lists",
        "a: " + "[" * 5000 + "]" * 5000 + "\n",
        "hostile.yml: line 1, column 67: nested deeper than 64 levels: a configuration needs a few",
    ),
    ("5,000 levels of mappings", "a: " + "{a: " * 5000 + "1" + "}" * 5000, "nested deeper than 64 levels"),
    ("unclosed nesting", "a: " + "[" * 200_000, "nested deeper than 64 levels"),
    (
        "a huge number of values",
        "a: [" + "1, " * 300_000 + "1]\n",
        "hostile.yml: line 1, column 29996: holds more than 10000 values: a configuration holds a few "
        "hundred at most",
    ),
    (
        "a NUL byte",
        b"heroku:\n  app: a\x00b\n",
        "hostile.yml: cannot read: binary content (a NUL byte at line 2, column 9), not YAML text",
    ),
    ("binary content", bytes(range(256)) * 8, "hostile.yml: cannot read: not UTF-8 text"),
    ("Latin-1 text", "app: café\n".encode("latin-1"), "hostile.yml: cannot read: not UTF-8 text"),
    (
        "a control character",
        "app: a\x07b\n",
        "hostile.yml: cannot read: not YAML text (control character #x0007 at line 1, column 7)",
    ),
    (
        "a Python object",
        "a: !!python/object/apply:os.system [echo pwned]\n",
        "hostile.yml: line 1, column 4: tags that build Python objects (!!python/...) are not allowed: "
        "write plain values",
    ),
    ("a Python name", "a: !!python/name:os.system\n", "tags that build Python objects"),
    ("a Python module", "? !!python/module:os\n: 1\n", "tags that build Python objects"),
    ("a duplicate key", "a: 1\na: 2\n", "hostile.yml: invalid YAML at line 2, column 1: duplicate key 'a'"),
    (
        "a 13th month",
        "a: 2026-13-45\n",
        "hostile.yml: invalid YAML at line 1, column 4: not a valid date or time (quote it to keep it as "
        "text)",
    ),
    ("a bad explicit timestamp", "a: !!timestamp 2026-01-01T99:00\n", "not a valid date or time"),
    (
        "a 5,000-digit number",
        "a: " + "7" * 5000 + "\n",
        "hostile.yml: invalid YAML at line 1, column 4: not a whole number YAML can read (at most 4300 "
        "digits)",
    ),
    ("a bad explicit float", "a: !!float many\n", "line 1, column 4: not a number YAML can read"),
]


@pytest.mark.parametrize(("content", "expected"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_a_hostile_file_is_one_clear_problem_found_quickly(
    tmp_path: Path, content: str | bytes, expected: str
) -> None:
    started = time.monotonic()
    data, found = read(tmp_path, content)
    elapsed = time.monotonic() - started
    assert data is None
    assert len(found) == 1 and expected in found[0], found
    assert elapsed < 2, f"took {elapsed:.2f}s"


def test_a_file_over_1_mib_is_refused_before_more_is_read(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yml"
    with path.open("wb") as file:  # 20 MB, sparse: nothing of it need ever be read
        file.truncate(20 * 1024 * 1024)
    found: list[ConfigError] = []
    started = time.monotonic()
    assert read_yaml(path, "pipeline.yml", found, missing="not found") is None
    assert time.monotonic() - started < 1
    assert [str(p) for p in found] == [
        "pipeline.yml: larger than 1 MiB: a configuration file is a few kilobytes; is this the right file?"
    ]


def test_a_file_of_exactly_1_mib_is_read(tmp_path: Path) -> None:
    comment = b"# " + b"x" * (MAX_FILE_BYTES - len(b"# \na: 1\n")) + b"\na: 1\n"
    assert len(comment) == MAX_FILE_BYTES
    assert read(tmp_path, comment) == ({"a": 1}, [])


def test_what_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yml").mkdir()
    found: list[ConfigError] = []
    assert read_yaml(tmp_path / "pipeline.yml", "pipeline.yml", found, missing="not found") is None
    assert [str(p) for p in found] == ["pipeline.yml: cannot read: not a regular file"]


def test_the_alias_is_refused_while_parsing_before_the_document_is_even_read_to_its_end(
    tmp_path: Path,
) -> None:
    # The alias comes before a syntax error: the problem is the alias, so parsing stopped there,
    # and nothing was built (let alone expanded) from the document.
    _, found = read(tmp_path, billion_laughs() + "broken: [unclosed\n")
    assert found == [
        "hostile.yml: line 2, column 14: aliases (*name) are not allowed: write the value out in full "
        "(a configuration has no need of anchors and aliases)"
    ]


def test_an_anchor_alone_does_no_harm(tmp_path: Path) -> None:
    assert read(tmp_path, "a: &x 1\nb: 2\n") == ({"a": 1, "b": 2}, [])


def test_nesting_up_to_the_limit_is_read(tmp_path: Path) -> None:
    text = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    data, found = read(tmp_path, text)
    assert found == [] and data is not None
    too_deep = "a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n"
    assert read(tmp_path, too_deep)[1] == [
        f"hostile.yml: line 1, column {3 + MAX_DEPTH}: nested deeper than 64 levels: "
        "a configuration needs a few"
    ]


def test_as_many_values_as_the_limit_are_read(tmp_path: Path) -> None:
    items = MAX_VALUES - 3  # the top mapping, the key "a" and the list are values too
    data, found = read(tmp_path, "a: [" + "1, " * (items - 1) + "1]\n")
    assert found == [] and data is not None and len(data["a"]) == items
    assert "holds more than 10000 values" in read(tmp_path, "a: [" + "1, " * items + "1]\n")[1][0]


def test_line_ends_are_read_as_before(tmp_path: Path) -> None:
    assert read(tmp_path, b"a: 1\r\nb: [\r\n")[1] == [
        "hostile.yml: invalid YAML at line 3, column 1: expected the node content, but found "
        "'<stream end>' (while parsing a flow node at line 3)"
    ]
    assert read(tmp_path, b"a: 1\r\nb: 2\r") == ({"a": 1, "b": 2}, [])


@pytest.mark.parametrize("where", ["pipeline.yml", "environments/staging.yml", "environments/production.yml"])
def test_load_refuses_billion_laughs_in_any_file_with_one_problem(shipped: Path, where: str) -> None:
    (shipped.parent / where).write_text(billion_laughs())
    assert problems(shipped) == [
        f"{shipped.parent / where}: line 2, column 14: aliases (*name) are not allowed: write the value "
        "out in full (a configuration has no need of anchors and aliases)"
    ]


# --- Absurd durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "99999999999999999999d",
        "99999999999999999999ms",
        "36501d",
        "36500d1ms",
        "9" * 400,
        "9" * 400 + "s",
        10**30,
        1e300,
        float("inf"),
        timedelta(days=40_000),
    ],
)
def test_a_duration_past_100_years_is_too_large(value: object) -> None:
    with pytest.raises(DurationTooLong, match=r"^too large: at most 36500 days$"):
        parse_duration(value)


def test_the_longest_duration_is_read() -> None:
    assert parse_duration("36500d") == MAX_DURATION == parse_duration(MAX_DURATION.total_seconds())
    assert parse_duration(format_duration(MAX_DURATION)) == MAX_DURATION


@pytest.mark.parametrize(
    ("file", "edit", "expected"),
    [
        (
            "pipeline.yml",
            ("poll_interval: 30s", "poll_interval: 99999999999999999999d"),
            "pipeline.yml: schedule.poll_interval: too large: at most 36500 days",
        ),
        (
            "pipeline.yml",
            ("max_age: 72h", "max_age: 1.0e+400"),
            "pipeline.yml: approval.max_age: too large: at most 36500 days",
        ),
        (
            "environments/staging.yml",
            ("interval: 2s", "interval: 99999999999999999999999"),
            "environments/staging.yml: checks[0].http.interval: too large: at most 36500 days",
        ),
        (
            "environments/production.yml",
            ("max_age: 26h", "max_age: 9999999999999h"),
            "environments/production.yml: backups.max_age: too large: at most 36500 days",
        ),
    ],
)
def test_an_absurd_duration_is_a_problem_naming_its_key(
    shipped: Path, file: str, edit: tuple[str, str], expected: str
) -> None:
    path = shipped.parent / file
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    assert problems(shipped) == [f"{shipped.parent}/{expected}"]


def test_the_shipped_files_still_load() -> None:
    settings = config.load(ROOT / "pipeline.yml", ENV)
    assert settings.schedule.poll_interval == timedelta(seconds=30)
    assert yaml.safe_load((ROOT / "pipeline.yml").read_text())["name"] == settings.name


# --- PIPELINE_DATABASE_URL ------------------------------------------------------------------------

UNSUPPORTED = (
    "environment: PIPELINE_DATABASE_URL: unsupported database: the store is SQLite "
    "(sqlite:////abs/path/pipeline.db) or PostgreSQL (postgresql://user:password@host/db; postgres:// "
    "and postgresql+psycopg:// too)"
)


@pytest.mark.parametrize(
    "url",
    ["mysql://deploy:pw@db/pipeline", "mysql+pymysql://db/x", "postgresql+psycopg2://db/x", "SQLite:///x.db"],
)
def test_a_database_the_store_does_not_run_on_is_refused_naming_the_variable(shipped: Path, url: str) -> None:
    assert problems(shipped, {**ENV, "PIPELINE_DATABASE_URL": url}) == [UNSUPPORTED]


@pytest.mark.parametrize(
    "url", ["postgresql://u:pw@db:port/x", "postgres://[::1/x", "postgresql://db:70000/x"]
)
def test_a_postgresql_url_with_a_bad_port_is_refused(shipped: Path, url: str) -> None:
    assert problems(shipped, {**ENV, "PIPELINE_DATABASE_URL": url}) == [
        "environment: PIPELINE_DATABASE_URL: expected a PostgreSQL URL such as "
        "postgresql://user:password@host:5432/db (a port is a number from 0 to 65535; an IPv6 host is "
        "written in brackets)"
    ]


@pytest.mark.parametrize("relative", [False, True])
def test_a_sqlite_file_in_a_missing_directory_is_refused_naming_it(
    shipped: Path, tmp_path: Path, relative: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = Path("typo") / "store" if relative else tmp_path / "typo" / "store"
    assert problems(shipped, {**ENV, "PIPELINE_DATABASE_URL": f"sqlite:///{missing}/pipeline.db"}) == [
        f"environment: PIPELINE_DATABASE_URL: the directory {missing} does not exist: create it, or correct "
        "the path (or unset PIPELINE_DATABASE_URL for the default store, .pipeline/pipeline.db beside "
        "pipeline.yml)"
    ]
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///{dir}/pipeline.db",  # an existing directory
        "sqlite:///{dir}/.pipeline/pipeline.db",  # the default store, whose directory is made
        "sqlite:///{dir}/.pipeline/pipeline.db?timeout=5",
        "sqlite://",  # in memory
        "sqlite:///:memory:",
        "postgresql://deploy:pw@db.internal:5432/pipeline",
        "postgres://db/pipeline",
        "postgresql+psycopg://db/pipeline",
    ],
)
def test_supported_databases_and_the_default_store_are_taken(shipped: Path, url: str) -> None:
    value = url.format(dir=shipped.parent.resolve())
    assert not (shipped.parent / ".pipeline").exists()
    assert config.load(shipped, {**ENV, "PIPELINE_DATABASE_URL": value}).database_url == value


def test_the_default_store_needs_no_directory(shipped: Path) -> None:
    settings = config.load(shipped, ENV)
    assert settings.database_url == f"sqlite:///{shipped.parent.resolve()}/.pipeline/pipeline.db"


# --- What a problem repeats ---------------------------------------------------------------------


def test_a_key_holding_a_newline_or_a_great_length_is_repeated_on_one_line_and_short(shipped: Path) -> None:
    text = shipped.read_text()
    shipped.write_text(text.replace("schedule:\n", 'schedule:\n  "bad\\nkey": 1\n  ' + "k" * 1000 + ": 2\n"))
    found = problems(shipped)
    assert len(found) == 2
    assert found[0].startswith(f"{shipped}: schedule.bad\\nkey: unknown key")
    assert found[1].startswith(f"{shipped}: schedule.{'k' * 57}...: unknown key")
    assert all("\n" not in line and len(line) < 400 for line in found)


def test_an_unknown_check_of_a_great_length_is_named_short(shipped: Path) -> None:
    staging = shipped.parent / "environments" / "staging.yml"
    staging.write_text("heroku: {app: a}\nchecks:\n  - " + "x" * 1000 + ": {}\n")
    (line,) = problems(shipped)
    assert line.startswith(f"{staging}: checks[0]: unknown check '{'x' * 57}...'; known checks: ")
    assert len(line) < 400


def test_an_unset_variable_of_a_great_length_is_named_short(shipped: Path) -> None:
    shipped.write_text(shipped.read_text().replace("name: claims", "name: ${" + "V" * 10_000 + "}"))
    (line,) = problems(shipped)
    assert line.startswith(f"{shipped}: name: ${{{'V' * 57}...}} is not set in the environment")
    assert len(line) < 400
