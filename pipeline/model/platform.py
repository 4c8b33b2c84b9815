"""What Heroku reports, in our words: builds, releases, dynos, formation, promotions, backups, and
what a check found."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class HerokuBuild:
    id: str
    status: str  # pending | succeeded | failed
    version: str | None
    release_id: str | None
    slug_id: str | None
    created_at: datetime
    output_stream_url: str | None = None


@dataclass(frozen=True)
class HerokuRelease:
    id: str
    version: int
    status: str  # pending | succeeded | failed | expired
    slug_id: str | None
    current: bool
    description: str
    created_at: datetime
    output_stream_url: str | None = None


@dataclass(frozen=True)
class Dyno:
    """One running process of an app: ``state`` crashed | down | idle | starting | up."""

    name: str
    type: str
    state: str
    release_version: int | None


@dataclass(frozen=True)
class Formation:
    """One process type of an app's formation: how many dynos of ``type`` should run."""

    type: str
    quantity: int
    size: str
    command: str


@dataclass(frozen=True)
class PromotionTarget:
    app_id: str
    release_id: str | None
    status: str  # pending | succeeded | failed
    error_message: str | None


@dataclass(frozen=True)
class Promotion:
    id: str
    status: str  # pending | completed
    targets: tuple[PromotionTarget, ...]


@dataclass(frozen=True)
class Backup:
    """A Heroku Postgres backup (a Data API transfer). ``name`` is what the CLI shows (b001...)."""

    id: str  # the transfer uuid
    num: int
    name: str
    status: str  # pending | running | completed | failed
    created_at: datetime
    finished_at: datetime | None
    size_bytes: int
    database: str
    logs: tuple[str, ...] = ()

    @property
    def scheduled(self) -> bool:
        """Made by the database's backup schedule (``a012``), not asked for (``b012``)."""
        return self.name.startswith("a")


@dataclass(frozen=True)
class DatabaseInfo:
    """What ``heroku pg:info`` shows of a database that the backup promise rests on: its plan, when
    it was made, and the earliest point its rollback window reaches (None: the plan keeps none,
    as Essential plans do)."""

    addon: str
    plan: str
    created_at: datetime | None
    rollback_earliest: datetime | None


@dataclass(frozen=True)
class BackupSchedule:
    """A daily backup schedule of a database: the hour it runs in its time zone."""

    uuid: str
    name: str
    hour: int
    timezone: str


@dataclass(frozen=True)
class CheckResult:
    """One run of one check: ``passed``, ``failed`` (with the evidence) or ``error`` (could not run).

    ``detail`` is one line for people; ``evidence`` is longer text worth keeping in the history
    (a release phase's output, a failing answer's body), or "".
    """

    name: str
    outcome: str  # passed | failed | error
    detail: str
    evidence: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"
