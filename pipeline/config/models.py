"""The shapes of ``pipeline.yml`` and ``environments/<stage>.yml``: pydantic models of their
sections and values, staging's file and production's each a model of its own.

Rules across keys are the models' validators, raising :func:`~pipeline.config.messages.broken_rule`
(its problems follow the keys' own): the production branch is another branch, each approver counts
once and enough of them can approve, production names its Heroku pipeline. The one a validator
cannot say, ``backups:`` on staging, is :func:`backups_on_staging`. The rule across the two stages'
files is :func:`pipeline.config.load`'s, on the resolved stages.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from checks import PositiveDuration
from pipeline.config.messages import Loc, broken_rule
from pipeline.config.patterns import backtracking_problem
from pipeline.errors import ConfigError
from pipeline.model import DeployWindows, Window

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

    @model_validator(mode="after")
    def _releases_merge_into_another_branch(self) -> SourceSettings:
        """The production branch is not the watched branch: releases merge into it."""
        if self.branch == self.production_branch:
            raise broken_rule(
                (("production_branch",), "must differ from source.branch (releases merge into it)")
            )
        return self


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

    @model_validator(mode="after")
    def _enough_distinct_approvers(self) -> ApprovalSettings:
        """Each approver is listed once, and min_approvals distinct people can approve."""
        problems: list[tuple[Loc, str]] = []
        seen: set[str] = set()
        for index, approver in enumerate(self.approvers):
            if approver in seen:
                problems.append((("approvers", index), "listed twice; each approver counts once"))
            seen.add(approver)
        people = len(seen)
        if self.min_approvals > people:
            problems.append(
                (
                    ("min_approvals",),
                    f"must be between 1 and {people} (the number of approvers): "
                    f"{self.min_approvals} distinct people could never approve",
                )
            )
        if problems:
            raise broken_rule(*problems)
        return self


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
    lease: PositiveDuration = Field(
        default=timedelta(minutes=5),
        description="how long a pass holds the store's pass lock without renewing it; a process paused "
        "longer loses it to another and acts on nothing more",
    )
    effect_grace: PositiveDuration = Field(
        default=timedelta(minutes=2),
        description="how long something asked of Heroku or Bitbucket whose answer was lost (a crash, "
        "a timeout) may take to show up before it is asked for again; keep it well above the 30 s "
        "request timeout",
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


class PipelineFile(_Section):
    """The whole of ``pipeline.yml``."""

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
    capture_timeout: PositiveDuration = Field(
        default=timedelta(hours=6),
        description="a pre-promotion backup still running after this long ends the release "
        "promotion_failed (production unchanged)",
    )
    restore_checks: tuple[Text, ...] = Field(
        default=(),
        description="SQL the restore drill runs on a restored backup; each returns true or a non-zero number",
    )


class _StageHeroku(_Section):
    """``heroku:`` in a stage's file: the stage's app, and the Heroku pipeline holding both apps."""

    app: Text = Field(description="the Heroku app (name or id) of this stage")
    pipeline: Text | None = Field(
        default=None,
        description="the Heroku pipeline (name or id) holding both apps; required for production",
    )


def _required_for_production(value: object) -> object:
    if value is None:
        raise broken_rule(
            (
                (),
                "required for production: the Heroku pipeline (name or id) holding both apps; "
                "promotion copies the staging slug through it",
            )
        )
    return value


class _ProductionHeroku(_StageHeroku):
    """``heroku:`` in the production stage's file, where the pipeline is required: promotion copies the
    staging slug through it."""

    pipeline: Annotated[Text, BeforeValidator(_required_for_production)] = Field(
        default=None,
        validate_default=True,  # so that a left-out pipeline is the rule's problem, not "missing"
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


MAX_PATTERN = 1000
"""The longest regular expression taken (characters): one for a line of output needs far fewer."""


def _pattern(value: str) -> str:
    if len(value) > MAX_PATTERN:
        raise ValueError(
            f"longer than {MAX_PATTERN} characters: a pattern for a line of output needs far fewer"
        )
    try:
        re.compile(value)
        problem = backtracking_problem(value)
    except (re.error, OverflowError) as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    except RecursionError:
        raise ValueError("not a regular expression Python can read: groups nested too deeply") from None
    if problem is not None:
        raise ValueError(problem)
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


class _StageFile(_Section):
    """What the two stages' files have in common: the whole of an ``environments/<stage>.yml``."""

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


class StagingFile(_StageFile):
    """The staging stage's file (the first of pipeline.yml's stages). It has no backups: a
    ``backups:`` key is still validated as backups, and refused by :func:`backups_on_staging`."""


class ProductionFile(_StageFile):
    """The production stage's file (the last of pipeline.yml's stages): its Heroku pipeline is
    required, and its backup policy is the defaults when the file has no ``backups:``."""

    heroku: _ProductionHeroku = Field(description="the stage's Heroku app: {app: ..., pipeline: ...}")
    backups: Annotated[BackupSettings, BeforeValidator(_none_is_empty)] = Field(
        default_factory=BackupSettings, description="production backup policy"
    )


def backups_on_staging(data: dict[str, Any], display: str) -> list[ConfigError]:
    """The staging file's ``backups:`` key (even an empty one), refused: backups are production's.

    A rule of :class:`StagingFile` written out rather than a validator, because both must be said:
    what is wrong inside that ``backups:`` (validated as production's would be) and that the key does
    not belong here; a validator of the key could say only one of the two."""
    if "backups" not in data:
        return []
    return [
        ConfigError(display, "backups", "backups apply to the production stage only; remove this key here")
    ]
