"""The backup promise, judged: "the app can be restored to any point within the last four days, and
its backups are proven to restore". Each part is judged on what Heroku shows now (the database's
rollback window, its schedule, its backups) and on the last restore drill the history holds.

Pure: ``judge_promise`` takes what was read and the time, and says of each part whether it holds
and why, in words for people (and for the history's evidence).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.domain.text import iso, span_text
from pipeline.model import Backup, BackupSchedule, DatabaseInfo

# How long after its period a drill may be late before the promise counts it missed.
DRILL_PERIODS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}
DRILL_SLACK = timedelta(hours=2)


@dataclass(frozen=True)
class BackupPromise:
    """What the team promises of production's database (``backups:`` of the production stage):
    ``point_in_time`` the rollback window it keeps (None: not promised), ``schedule`` a daily
    backup schedule exists and its newest backup is younger than ``max_age``, ``drill`` how often a
    backup is restored and checked (``daily``, ``weekly``, ``off``)."""

    point_in_time: timedelta | None = timedelta(days=4)
    schedule: bool = True
    max_age: timedelta = timedelta(hours=26)
    drill: str = "off"


@dataclass(frozen=True)
class DrillRecord:
    """The last restore drill the history holds: when, of which backup, whether it passed, how many
    tables it restored, and what it said."""

    at: datetime
    backup: str
    ok: bool
    tables: int | None
    detail: str


@dataclass(frozen=True)
class Part:
    """One part of the promise: ``ok`` (None: not promised, so it holds), and why."""

    ok: bool | None
    detail: str

    @property
    def holds(self) -> bool:
        return self.ok is not False


@dataclass(frozen=True)
class PromiseVerdict:
    """Each part of the promise as judged at ``checked_at``; ``earliest`` the rollback window's
    earliest point, ``newest`` the newest finished backup."""

    checked_at: datetime
    point_in_time: Part
    schedule: Part
    newest_backup: Part
    drill: Part
    earliest: datetime | None = None
    newest: Backup | None = None

    @property
    def ok(self) -> bool:
        return all(p.holds for p in (self.point_in_time, self.schedule, self.newest_backup, self.drill))

    @property
    def broken(self) -> str:
        """The parts that do not hold, in a line ("" when all do)."""
        parts = (
            ("point in time", self.point_in_time),
            ("schedule", self.schedule),
            ("newest backup", self.newest_backup),
            ("drill", self.drill),
        )
        return "; ".join(f"{name}: {p.detail}" for name, p in parts if not p.holds)

    @property
    def release_parts_hold(self) -> bool:
        """What a release's ``backups_verified`` rests on: the window, the schedule, the newest
        backup (a drill is the service's own, not each release's)."""
        return self.point_in_time.holds and self.schedule.holds and self.newest_backup.holds


def judge_promise(
    promise: BackupPromise,
    info: DatabaseInfo | None,
    schedules: Sequence[BackupSchedule],
    backups: Sequence[Backup],
    last_drill: DrillRecord | None,
    now: datetime,
) -> PromiseVerdict:
    """Each part of ``promise`` on what was read (``backups`` newest first)."""
    finished = [b for b in backups if b.status in ("completed", "failed")]
    newest = finished[0] if finished else None
    problem = backup_problem(newest, promise.max_age, now)
    if problem is not None or newest is None:
        newest_part = Part(False, problem or "production has no backup at all")
    else:
        finished_at = iso(newest.finished_at or newest.created_at)
        newest_part = Part(True, f"{newest.name} completed {finished_at}, {newest.size_bytes} bytes")
    return PromiseVerdict(
        checked_at=now,
        point_in_time=_point_in_time(promise, info, now),
        schedule=_schedule(promise, schedules, backups, now),
        newest_backup=newest_part,
        drill=_drill(promise, last_drill, now),
        earliest=info.rollback_earliest if info else None,
        newest=newest,
    )


def _point_in_time(promise: BackupPromise, info: DatabaseInfo | None, now: datetime) -> Part:
    if promise.point_in_time is None:
        return Part(None, "not promised (backups.point_in_time: off)")
    wanted = span_text(promise.point_in_time)
    if info is None:
        return Part(False, "the database's rollback window could not be read")
    if info.rollback_earliest is None:
        return Part(
            False,
            f"plan {info.plan} keeps no rollback window (Heroku's Essential plans keep none; Standard "
            f"keeps 4 days, Premium and up a week): the promise of {wanted} cannot hold",
        )
    reach = now - info.rollback_earliest
    if reach >= promise.point_in_time - timedelta(minutes=5):
        return Part(True, f"plan {info.plan}: rollback to any point since {iso(info.rollback_earliest)}")
    created = info.created_at
    if created is not None and info.rollback_earliest <= created + timedelta(minutes=5):
        return Part(
            True,
            f"plan {info.plan}: covers since creation, {span_text(now - created)} "
            f"(the database is younger than {wanted})",
        )
    return Part(
        False,
        f"plan {info.plan} reaches back only {span_text(reach)} (to {iso(info.rollback_earliest)}), "
        f"not {wanted}",
    )


def _schedule(
    promise: BackupPromise, schedules: Sequence[BackupSchedule], backups: Sequence[Backup], now: datetime
) -> Part:
    if not promise.schedule:
        return Part(None, "not promised (backups.schedule: false)")
    if not schedules:
        return Part(
            False,
            "no backup schedule on the database: `pipeline backups schedule --at 02:00 --timezone "
            "Europe/Amsterdam` makes one",
        )
    when = ", ".join(f"{s.hour:02d}:00 {s.timezone}" for s in schedules)
    scheduled = [b for b in backups if b.scheduled and b.status == "completed"]
    if not scheduled:
        return Part(False, f"daily at {when}, but no scheduled backup has completed yet")
    newest = scheduled[0]
    finished = newest.finished_at or newest.created_at
    if now - finished > promise.max_age:
        return Part(
            False,
            f"daily at {when}, but its newest backup {newest.name} finished {iso(finished)}, more than "
            f"{span_text(promise.max_age)} ago (backups.max_age)",
        )
    return Part(True, f"daily at {when}; newest {newest.name} finished {iso(finished)}")


def _drill(promise: BackupPromise, last: DrillRecord | None, now: datetime) -> Part:
    period = DRILL_PERIODS.get(promise.drill)
    if period is None:
        if last is None:
            return Part(None, "no drill promised (backups.drill: off), none run")
        said = "passed" if last.ok else f"failed: {last.detail}"
        return Part(None, f"no drill promised (backups.drill: off); the last, {iso(last.at)}, {said}")
    if last is None:
        return Part(False, f"a {promise.drill} restore drill is promised and none has run yet")
    if not last.ok:
        return Part(False, f"the last drill, {iso(last.at)} of {last.backup}, failed: {last.detail}")
    if now - last.at > period + DRILL_SLACK:
        return Part(False, f"the last drill passed {iso(last.at)}, more than a {promise.drill} period ago")
    tables = f", {last.tables} tables restored" if last.tables is not None else ""
    return Part(True, f"{last.backup} restored and checked {iso(last.at)}{tables}")


def backup_problem(backup: Backup | None, max_age: timedelta, now: datetime) -> str | None:
    """Why the newest production backup cannot be trusted, or None when it can."""
    if backup is None:
        return "production has no backup at all"
    if backup.status != "completed":
        return f"newest backup {backup.name} is {backup.status}, not completed"
    finished = backup.finished_at or backup.created_at
    if now - finished > max_age:
        return f"newest backup {backup.name} finished {finished.isoformat()}, older than {max_age}"
    if backup.size_bytes <= 0:
        return f"newest backup {backup.name} is empty (0 bytes)"
    return None
