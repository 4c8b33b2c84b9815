"""Property tests (hypothesis) of what reads the world's input: the configuration loader (any text,
any document: settings or a list of problems, never an exception), durations (a timedelta or a
ValueError; what is written reads back) and deploy windows (open now, or the next opening is ahead,
within 8 days, and open then)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from checks import MAX_DURATION, format_duration, parse_duration
from pipeline import config, domain
from pipeline.config import Settings
from pipeline.errors import ConfigInvalid
from pipeline.model import DeployWindows, Window

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "BITBUCKET_TOKEN": "bb-token-7f3a9c1e5d",
    "HEROKU_API_KEY": "hk-key-4b8e2d6f0a",
    "BITBUCKET_WEBHOOK_SECRET": "hook-secret-2c9e41f7",
    "PIPELINE_ACTOR": "ops",
}
FILES = ("pipeline.yml", "environments/staging.yml", "environments/production.yml")
# Deterministic (the same examples on every run, no example database): CI sees what a developer saw.
LOADER = settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,  # the loader reads three files per example
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
QUICK = settings(max_examples=500, derandomize=True, database=None, deadline=None)
WINDOWS = settings(QUICK, max_examples=250)


class ShippedCopy:
    """A copy of the shipped configuration whose files an example may overwrite; ``restore`` puts
    the shipped text back."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        shutil.copy(ROOT / "pipeline.yml", directory / "pipeline.yml")
        shutil.copytree(ROOT / "environments", directory / "environments")
        self.shipped = {name: (ROOT / name).read_text() for name in FILES}
        self.data = {name: yaml.safe_load(text) for name, text in self.shipped.items()}

    @property
    def config_path(self) -> Path:
        return self.directory / "pipeline.yml"

    def restore(self) -> None:
        for name, text in self.shipped.items():
            (self.directory / name).write_text(text)

    def write(self, name: str, content: str | bytes) -> None:
        path = self.directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", errors="surrogatepass")


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShippedCopy]:
    yield ShippedCopy(tmp_path_factory.mktemp("config"))


def settings_or_problems(copy: ShippedCopy) -> Settings | list[str]:
    """What the loader says of the copy: Settings, or its problems (each one line, with a file)."""
    try:
        return config.load(copy.config_path, ENV)
    except ConfigInvalid as exc:
        lines = [str(p) for p in exc.problems]
        assert lines, "ConfigInvalid without a problem"
        for problem, line in zip(exc.problems, lines, strict=True):
            assert "\n" not in line and "Traceback" not in line
            assert len(line) < 1500, line[:200]
            assert problem.file in (*(str(copy.directory / name) for name in FILES), "environment")
        return lines


# --- The configuration loader ------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["30s", "5m", "26h", "never", "${HOME}", "${UNSET_VAR}", "$${x}", "mon", "09:00-17:00"])
    | st.dates()
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
KEYS = {
    "pipeline.yml": ["name", "source", "stages", "approval", "schedule", "webhooks", "heroku", "other"],
    "environments/staging.yml": ["heroku", "checks", "windows", "rollback", "backups", "other"],
    "environments/production.yml": ["heroku", "checks", "windows", "rollback", "backups", "other"],
}


@LOADER
@given(name=st.sampled_from(FILES), text=st.text(max_size=400))
def test_any_text_in_any_file_is_settings_or_problems(copy: ShippedCopy, name: str, text: str) -> None:
    copy.restore()
    copy.write(name, text)
    settings_or_problems(copy)


@LOADER
@given(name=st.sampled_from(FILES), content=st.binary(max_size=400))
def test_any_bytes_in_any_file_are_settings_or_problems(copy: ShippedCopy, name: str, content: bytes) -> None:
    copy.restore()
    copy.write(name, content)
    settings_or_problems(copy)


@LOADER
@given(name=st.sampled_from(FILES), document=VALUES)
def test_any_document_in_any_file_is_settings_or_problems(
    copy: ShippedCopy, name: str, document: Any
) -> None:
    copy.restore()
    copy.write(name, yaml.safe_dump(document))
    settings_or_problems(copy)


@LOADER
@given(data=st.data())
def test_any_value_under_any_key_is_settings_or_problems(copy: ShippedCopy, data: st.DataObject) -> None:
    """The shipped files with one key (or one key of one section) set to anything."""
    copy.restore()
    name = data.draw(st.sampled_from(FILES))
    document = yaml.safe_load(copy.shipped[name])
    key = data.draw(st.sampled_from(KEYS[name]))
    section = document.get(key)
    if isinstance(section, dict) and section and data.draw(st.booleans()):
        inner = data.draw(st.sampled_from([*sorted(section), "unknown_key"]))
        section[inner] = data.draw(VALUES)
    else:
        document[key] = data.draw(VALUES)
    copy.write(name, yaml.safe_dump(document))
    settings_or_problems(copy)


def test_the_shipped_copy_loads(copy: ShippedCopy) -> None:
    copy.restore()
    assert isinstance(settings_or_problems(copy), Settings)


# --- Durations ---------------------------------------------------------------------------------

ANYTHING = (
    st.text()
    | st.from_regex(r"\A\d{1,30}(\.\d{1,10})?(ms|d|h|m|s)?\Z")
    | st.from_regex(r"\A(\d{1,25}d)?(\d{1,25}h)?(\d{1,25}m)?(\d{1,25}s)?(\d{1,25}ms)?\Z")
    | st.integers()
    | st.floats()
    | st.booleans()
    | st.none()
    | st.timedeltas()
    | st.lists(st.integers(), max_size=2)
)


@QUICK
@given(value=ANYTHING)
def test_any_value_is_a_duration_or_a_value_error(value: object) -> None:
    try:
        duration = parse_duration(value)
    except ValueError as exc:
        assert str(exc)
        assert "\n" not in str(exc)
        return
    assert isinstance(duration, timedelta)
    assert timedelta(0) <= duration <= MAX_DURATION


@QUICK
@given(value=st.timedeltas(min_value=timedelta(0), max_value=MAX_DURATION))
def test_a_duration_written_out_reads_back(value: timedelta) -> None:
    millis = value - timedelta(microseconds=value.microseconds % 1000)  # written to the millisecond
    assert parse_duration(format_duration(millis)) == millis


@QUICK
@given(
    days=st.integers(0, 400),
    hours=st.integers(0, 23),
    minutes=st.integers(0, 59),
    seconds=st.integers(0, 59),
    millis=st.integers(0, 999),
)
def test_units_written_largest_first_add_up(
    days: int, hours: int, minutes: int, seconds: int, millis: int
) -> None:
    parts = {"d": days, "h": hours, "m": minutes, "s": seconds, "ms": millis}
    text = "".join(f"{count}{unit}" for unit, count in parts.items() if count)
    assume(text)
    expected = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds, milliseconds=millis)
    assert parse_duration(text) == expected
    assert parse_duration(text.upper()) == expected
    assert parse_duration(f"  {text} ") == expected


@QUICK
@given(seconds=st.floats(min_value=0, max_value=MAX_DURATION.total_seconds()))
def test_a_number_of_seconds_is_that_many_seconds(seconds: float) -> None:
    assert parse_duration(seconds) == timedelta(seconds=seconds)


# --- Deploy windows ----------------------------------------------------------------------------

ZONES = [
    "UTC",
    "Europe/Amsterdam",
    "America/New_York",
    "America/St_Johns",  # half-hour offset
    "Asia/Kathmandu",  # 5:45
    "Australia/Lord_Howe",  # a half-hour DST shift
    "Pacific/Chatham",
    "Pacific/Apia",  # skipped a whole day in 2011
    "Pacific/Kiritimati",  # UTC+14
    "America/Santiago",  # DST at midnight: the day starts at 01:00
]


@st.composite
def windows(draw: st.DrawFn) -> DeployWindows:
    allow = []
    for _ in range(draw(st.integers(1, 3))):
        days = draw(st.frozensets(st.integers(0, 6), min_size=1))
        start = draw(st.times().map(lambda t: t.replace(second=0, microsecond=0)))
        all_day_end = time(0)
        end = draw(st.just(all_day_end) | st.times().map(lambda t: t.replace(second=0, microsecond=0)))
        assume(end == time(0) or end > start)
        allow.append(Window(days, start, end))
    return DeployWindows(ZoneInfo(draw(st.sampled_from(ZONES))), tuple(allow))


INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.timezones())


@WINDOWS
@given(deploy=windows(), now=INSTANTS)
def test_a_window_is_open_now_or_opens_within_8_days_and_is_open_then(
    deploy: DeployWindows, now: datetime
) -> None:
    is_open, opens = domain.window_state(deploy, now)
    if is_open:
        assert opens is None
        return
    assert opens is not None, "closed, with no next opening"
    assert now < opens <= now + timedelta(days=8)
    assert domain.window_state(deploy, opens) == (True, None), f"not open at its opening {opens}"
