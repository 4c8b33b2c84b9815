"""``rollback.migration_pattern``: a pattern liable to catastrophic backtracking is refused when the
configuration is read, saying why; the shipped default and ordinary patterns pass."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
import yaml

from pipeline import config
from pipeline.config.patterns import ADJACENT, ALTERNATIVES, NESTED, backtracking_problem
from pipeline.errors import ConfigInvalid

ROOT = Path(__file__).resolve().parents[2]
ENV = {"BITBUCKET_TOKEN": "bb-token-7f3a9c1e5d", "HEROKU_API_KEY": "hk-key-4b8e2d6f0a"}
ENV["BITBUCKET_WEBHOOK_SECRET"] = "hook-secret-2c9e41f7"

REFUSED = [
    (r"(a+)+$", NESTED),
    (r"(a*)*", NESTED),
    (r"(?:\w*\s?)*$", NESTED),
    (r"(x+x+)+y", NESTED),
    (r"(.*a){12}", NESTED),
    (r"(?:(a+)+)++", NESTED),  # possessive outside, but (a+)+ backtracks inside it
    (r"(\d+\.){3}\d+", NESTED),  # harmless, but nested: (\d++\.){3}\d+ passes
    (r"(a|ab)+c", ALTERNATIVES),
    (r"(?i)(Apply|apply)+", ALTERNATIVES),
    (r"(?:foo|)+bar", ALTERNATIVES),
    (r"\s*\s*x", ADJACENT),
    (r".*.*=", ADJACENT),
    (r"\d+\d+$", ADJACENT),
    (r"a*\b\w*", ADJACENT),
    (r"(?i:a)+(?i:A)+", ADJACENT),
]
PASSED = [
    config.MIGRATION_PATTERN,
    r"rake db:migrate",
    r"Running\s+upgrade\s+\S+\s+->\s+\S+",
    r"(?i)^\s*(==\s+\d+\s+\w+:\s+migrating)",
    r"(applying|migrating|running upgrade)+",
    r"(?:\r\n|\n)+",
    r"(\w|\d)*$",  # one character class: nothing to backtrack
    r"^\s*\S+",
    r"\w+\s*",
    r"[^x]*x[^x]*y",
    r"(a++)+$",
    r"(?>a+)+$",
    r"\s*+\s*",
    r"(\d++\.){3}\d+",
    r"a{2,5}",
    r"(ab){2,}",
]


@pytest.mark.parametrize(("pattern", "problem"), REFUSED)
def test_a_pattern_liable_to_catastrophic_backtracking_is_found(pattern: str, problem: str) -> None:
    assert backtracking_problem(pattern) == problem


@pytest.mark.parametrize("pattern", PASSED)
def test_the_default_and_ordinary_patterns_pass(pattern: str) -> None:
    assert backtracking_problem(pattern) is None


@pytest.mark.parametrize("pattern", PASSED)
def test_patterns_that_pass_run_quickly_on_hostile_output(pattern: str) -> None:
    compiled = re.compile(pattern)
    # Not exponential; quadratic at worst (a repeat that fails at the end is tried from each start).
    for text in ("a" * 2000 + "!", " " * 2000 + "!", "1." * 1000 + "!", "ab" * 1000, "\n" * 2000):
        started = time.monotonic()
        compiled.search(text)
        assert time.monotonic() - started < 1, (pattern, text[:10])


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pipeline.yml", tmp_path / "pipeline.yml")
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    return tmp_path / "pipeline.yml"


def with_pattern(shipped: Path, pattern: str) -> None:
    path = shipped.parent / "environments" / "production.yml"
    data = yaml.safe_load(path.read_text())
    data["rollback"] = {"migration_pattern": pattern}
    path.write_text(yaml.safe_dump(data))


def test_the_shipped_default_is_the_pattern_in_use() -> None:
    settings = config.load(ROOT / "pipeline.yml", ENV)
    assert settings.production.rollback.migration_pattern == config.MIGRATION_PATTERN


def test_a_refused_pattern_is_one_problem_naming_the_key_and_what_is_wrong(shipped: Path) -> None:
    with_pattern(shipped, "(a+)+$")
    with pytest.raises(ConfigInvalid) as caught:
        config.load(shipped, ENV)
    assert [str(p) for p in caught.value.problems] == [
        f"{shipped.parent}/environments/production.yml: rollback.migration_pattern: nested quantifiers (a "
        "repeat inside a repeated group, such as (a+)+) can take exponential time on some output: write it "
        "without nesting, or make the inner repeat possessive (a++) or atomic ((?>...))"
    ]


def test_a_written_out_ordinary_pattern_loads(shipped: Path) -> None:
    with_pattern(shipped, r"Running\s+upgrade")
    assert config.load(shipped, ENV).production.rollback.migration_pattern == r"Running\s+upgrade"


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a{99999999999}", "not a regular expression: the repetition number is too large"),
        (
            "(" * 2000 + ")" * 2000,
            "longer than 1000 characters: a pattern for a line of output needs far fewer",
        ),
        ("(applying", "not a regular expression: missing ), unterminated subpattern at position 0"),
    ],
)
def test_a_pattern_python_cannot_compile_is_a_problem_not_a_crash(
    shipped: Path, pattern: str, message: str
) -> None:
    with_pattern(shipped, pattern)
    with pytest.raises(ConfigInvalid) as caught:
        config.load(shipped, ENV)
    assert [p.message for p in caught.value.problems] == [message]
