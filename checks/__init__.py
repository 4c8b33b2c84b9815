"""Post-deploy check plugins: a new check is one small file.

A check answers one question about a freshly deployed app ("does /health say 200?", "did the
release phase succeed?", "do the dynos keep running?"). Each one is a module ``checks/<name>.py``,
named from ``environments/<stage>.yml`` by that module name::

    checks:
      - http: {path: /health, expect_status: 200, retries: 5, interval: 2s, soak: 30s}
      - release_phase:
      - dynos: {soak: 1m}

A plugin module exposes exactly two things:

``Options``
    A pydantic model inheriting :class:`CheckOptions` (so it has ``retries``, ``interval``,
    ``backoff`` and ``soak``, and is ``extra="forbid"`` and frozen). Its fields are the keys allowed
    under the check's name in the YAML; ``pipeline.config`` validates them before anything runs and
    names the offending key (``checks[0].http.retries``). Durations use :data:`Duration` ("30s",
    "5m", "1h30m", 2.5).

``run(options: Options, target: Target) -> pipeline.model.CheckResult``
    Makes ONE attempt and reports it: ``passed``; ``failed`` with the evidence (status code, an
    excerpt of the body, latency...); or ``error`` when the check could not run at all (connection
    refused, timeout, Heroku not answering). It never raises for an ordinary failure. Retrying and
    soaking are the controller's job: it calls ``run`` once per due attempt, waits ``interval``
    (times ``backoff`` after each failure) between attempts that did not pass, gives up after
    ``retries`` more, and once a check passed keeps calling it every ``interval`` until it has
    passed for ``soak`` (a failure during the soak fails the stage). ``run`` reads nothing from the
    environment and keeps no state; what it needs from Heroku it reads through ``target.platform``.

Modules whose names start with ``_`` are helpers, not checks. :func:`known_plugins` lists the
checks, :func:`load_plugin` imports one, :func:`run_check` runs one and turns a crashing plugin into
an ``error`` result.

The duration parser shared by the whole configuration (:func:`parse_duration`,
:func:`format_duration`, :data:`Duration`) lives here too, so that ``pipeline.config`` and every
plugin read "26h" the same way.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from datetime import timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from pipeline.errors import PipelineError
from pipeline.model import CheckResult

if TYPE_CHECKING:
    from pipeline.ports import Platform

# --- Durations --------------------------------------------------------------------------------

DURATION_EXPECTED = "expected a duration such as 30s, 5m, 26h"

_UNITS: dict[str, timedelta] = {
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}
_UNIT_ORDER = list(_UNITS)
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_BARE_NUMBER = re.compile(r"\d+(?:\.\d+)?")

MAX_DURATION_DAYS = 36500
MAX_DURATION = timedelta(days=MAX_DURATION_DAYS)
"""The longest duration read (100 years): anything longer is a mistake, and would overflow the
clock's arithmetic (a moment that far from now is past what a datetime holds)."""


class DurationTooLong(ValueError):
    """A duration past :data:`MAX_DURATION`: the message says so, and what the limit is."""

    def __init__(self) -> None:
        super().__init__(f"too large: at most {MAX_DURATION_DAYS} days")


def _bounded_seconds(seconds: float) -> timedelta:
    """``seconds`` as a timedelta, DurationTooLong past the limit (checked before timedelta,
    which overflows far later than the limit but does overflow)."""
    if seconds > MAX_DURATION.total_seconds():
        raise DurationTooLong()
    return timedelta(seconds=seconds)


def parse_duration(value: object) -> timedelta:
    """Read a duration: ``"30s"``, ``"5m"``, ``"26h"``, ``"2d"``, ``"1h30m"``, ``"250ms"``, or a bare
    non-negative number of seconds (``30``, ``2.5``, ``"30"``). A ``timedelta`` is returned as is.

    Units go from largest to smallest, each at most once, without spaces. Anything else (negative
    numbers, booleans, "26 hours", "1m1h") raises ``ValueError`` saying what is expected; the
    message never repeats the value. A duration longer than :data:`MAX_DURATION` raises
    :class:`DurationTooLong` (a ``ValueError``).
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"{DURATION_EXPECTED} (not negative)")
        if value > MAX_DURATION:
            raise DurationTooLong()
        return value
    if isinstance(value, bool):
        raise ValueError(DURATION_EXPECTED)
    if isinstance(value, int | float):
        if value < 0 or value != value:  # negative, -inf or nan
            raise ValueError(f"{DURATION_EXPECTED} (not negative)")
        return _bounded_seconds(value)  # inf is too large
    if not isinstance(value, str):
        raise ValueError(DURATION_EXPECTED)
    text = value.strip().lower()
    if _BARE_NUMBER.fullmatch(text):
        return _bounded_seconds(float(text))
    total = timedelta(0)
    position = 0
    last_unit = -1
    for match in _PART.finditer(text):
        unit = _UNIT_ORDER.index(match.group(2))
        if match.start() != position or unit <= last_unit:
            raise ValueError(DURATION_EXPECTED)
        size = _UNITS[match.group(2)]
        amount = float(match.group(1))
        if amount * size.total_seconds() > MAX_DURATION.total_seconds():
            raise DurationTooLong()
        total += amount * size
        position = match.end()
        last_unit = unit
    if position == 0 or position != len(text):
        raise ValueError(DURATION_EXPECTED)
    if total > MAX_DURATION:
        raise DurationTooLong()
    return total


def format_duration(value: timedelta) -> str:
    """A spelling :func:`parse_duration` reads back: ``"30s"``, ``"1h30m"``, ``"26h"``, ``"2d"``,
    ``"250ms"``, ``"0s"`` (rounded to the millisecond). Days are used only for whole days."""
    millis = round(value / timedelta(milliseconds=1))
    sign = "-" if millis < 0 else ""
    millis = abs(millis)
    day = round(_UNITS["d"] / timedelta(milliseconds=1))
    units = _UNIT_ORDER if millis % day == 0 else _UNIT_ORDER[1:]
    parts = []
    for unit in units:
        size = round(_UNITS[unit] / timedelta(milliseconds=1))
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + ("".join(parts) or "0s")


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"{DURATION_EXPECTED} (greater than zero)")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A ``timedelta`` field read with :func:`parse_duration`; dumped as "30s" in JSON mode."""

PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
"""A :data:`Duration` that must be greater than zero (timeouts, intervals between polls)."""


# --- The plugin interface ---------------------------------------------------------------------


class CheckOptions(BaseModel):
    """What every check accepts. Plugins' ``Options`` inherit it (and its strictness).

    ``retries``: how many more attempts the controller makes after a first one that did not pass
    (0 = one attempt only). ``interval``: how long it waits between attempts (and between two
    attempts of the soak). ``backoff``: the wait is multiplied by this after every attempt that did
    not pass (1 = always ``interval``), never beyond 5 minutes. ``soak``: once the check
    passed, keep checking for this long before it counts as passed; a failure meanwhile fails it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    retries: int = Field(
        default=3, ge=0, description="further attempts after a first one that did not pass (0 = one attempt)"
    )
    interval: Duration = Field(default=timedelta(seconds=2), description="wait between attempts")
    backoff: float = Field(
        default=1.0,
        ge=1.0,
        le=10.0,
        description="multiply the wait by this after each attempt that did not pass",
    )
    soak: Duration = Field(
        default=timedelta(0), description="keep checking for this long after the first pass; a failure fails"
    )


@dataclass(frozen=True)
class Target:
    """What a check looks at: one app of one stage, running one release of one commit.

    ``web_url`` is the app's public root URL as Heroku reports it (``https://<app>.herokuapp.com/``,
    or the sandbox's loopback URL); ``release_version`` the Heroku release number when known.
    ``platform`` is the Heroku Platform API (``pipeline.ports.Platform``) for checks that look at
    Heroku itself (the release, its release phase, the formation and dynos); checks only read
    through it. Its methods raise ``pipeline.errors.ExternalError``: report that as ``error``.
    """

    stage: str
    app: str
    web_url: str
    release_version: int | None
    commit: str
    platform: Platform | None = None


class UnknownCheck(PipelineError, LookupError):
    """A check name that is no module of the ``checks`` package. The message lists the known ones."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.known = known_plugins()
        super().__init__(f"unknown check {name!r}; known checks: {', '.join(self.known) or 'none'}")


def known_plugins() -> list[str]:
    """The names of the check plugins: the modules of this package not starting with ``_``, sorted."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_") and not info.ispkg
    )


def load_plugin(name: str) -> ModuleType:
    """Import and return the plugin module ``checks.<name>``.

    Raises :class:`UnknownCheck` when ``name`` is not one of :func:`known_plugins` (nothing outside
    the package is ever imported), and ``TypeError`` when the module does not follow the interface
    (an ``Options`` subclass of :class:`CheckOptions` and a callable ``run``): a programming error.
    """
    if name not in known_plugins():
        raise UnknownCheck(name)
    module = importlib.import_module(f"{__name__}.{name}")
    options = getattr(module, "Options", None)
    if not (isinstance(options, type) and issubclass(options, CheckOptions)) or not callable(
        getattr(module, "run", None)
    ):
        raise TypeError(
            f"checks.{name} is not a check plugin: it needs an Options class inheriting "
            "checks.CheckOptions and a run(options, target) function"
        )
    return module


def run_check(kind: str, options: CheckOptions, target: Target) -> CheckResult:
    """Run one attempt of check ``kind`` with its validated ``options`` against ``target``.

    A plugin that raises despite its contract yields an ``error`` result naming the exception, so
    one broken check cannot stop a controller pass. ``UnknownCheck`` and a ``TypeError`` for options
    of the wrong plugin still raise: those are configuration and programming errors.
    """
    module = load_plugin(kind)
    if not isinstance(options, module.Options):
        raise TypeError(
            f"options for check {kind!r} must be checks.{kind}.Options, not {type(options).__name__}"
        )
    try:
        result: Any = module.run(options, target)
    except Exception as exc:
        return CheckResult(
            name=kind, outcome="error", detail=f"check {kind} crashed: {type(exc).__name__}: {exc}"
        )
    if not isinstance(result, CheckResult):
        return CheckResult(
            name=kind,
            outcome="error",
            detail=f"check {kind} returned {type(result).__name__}, not a CheckResult",
        )
    return result
