"""The Data API's state: transfers (backups) and transfer schedules, persisted after every change.

Everything lives in one JSON file under the state dir (``sandbox.persist.JsonFile``); backup
archives live beside it in ``backups/{uuid}.dump``. All methods are thread-safe: the HTTP
threads and the capture worker share one store. Records hold no absolute URLs and no database
credentials; the API layer renders them.

Timestamps are written the way the Data API writes them, ``2015-03-23 20:38:10 +0000``.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.persist import JsonFile

TIME_FORMAT = "%Y-%m-%d %H:%M:%S %z"
DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def timestamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime(TIME_FORMAT)


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT)


@dataclass
class Transfer:
    """One transfer. A backup is ``from_type`` pg_dump to ``to_type`` gof3r."""

    uuid: str
    num: int
    app_id: str
    app_name: str
    addon_id: str
    from_name: str
    to_name: str
    created_at: str
    updated_at: str
    from_type: str = "pg_dump"
    to_type: str = "gof3r"
    schedule_uuid: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    canceled_at: str | None = None
    deleted_at: str | None = None
    succeeded: bool | None = None
    source_bytes: int | None = None
    processed_bytes: int = 0
    warnings: int = 0
    logs: list[dict[str, str]] = field(default_factory=list)

    @property
    def status(self) -> str:
        """As the CLI names it: completed, failed, canceled, running or pending."""
        if self.succeeded:
            return "completed"
        if self.canceled_at:
            return "canceled"
        if self.finished_at:
            return "failed"
        if self.started_at:
            return "running"
        return "pending"

    @property
    def name(self) -> str:
        """The CLI's name for it: ``b001`` manual, ``a001`` scheduled backup."""
        return f"{'a' if self.schedule_uuid else 'b'}{self.num:03d}"


@dataclass
class Schedule:
    uuid: str
    addon_id: str
    name: str
    hour: int
    timezone: str
    created_at: str
    updated_at: str
    days: list[str] = field(default_factory=lambda: list(DAYS))
    last_run_on: str | None = None  # the local date of the last backup it started


class BackupStore:
    """Transfers, schedules and the add-ons' first-seen times of one state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.dumps_dir = state_dir / "backups"
        self._file = JsonFile(state_dir / "heroku-data.json")
        self._lock = threading.RLock()
        data = self._file.load({})
        self._transfers = [Transfer(**t) for t in data.get("transfers", [])]
        self._schedules = [Schedule(**s) for s in data.get("schedules", [])]
        self._addons: dict[str, dict[str, Any]] = data.get("addons", {})

    def _save(self) -> None:
        self._file.save(
            {
                "transfers": [asdict(t) for t in self._transfers],
                "schedules": [asdict(s) for s in self._schedules],
                "addons": self._addons,
            }
        )

    def dump_path(self, transfer: Transfer) -> Path:
        return self.dumps_dir / f"{transfer.uuid}.dump"

    # -- add-ons ---------------------------------------------------------------------------------

    def addon_created_at(self, addon_id: str) -> str:
        """When the Data API first heard of the add-on (recorded once, then kept)."""
        with self._lock:
            entry = self._addons.get(addon_id)
            if entry is None:
                entry = self._addons[addon_id] = {"created_at": timestamp()}
                self._save()
            return str(entry["created_at"])

    # -- transfers -------------------------------------------------------------------------------

    def create_transfer(
        self, *, app_id: str, app_name: str, addon_id: str, from_name: str, schedule_uuid: str | None = None
    ) -> Transfer:
        """A new pending backup, numbered after every transfer the app ever had."""
        with self._lock:
            num = 1 + max((t.num for t in self._transfers if t.app_id == app_id), default=0)
            now = timestamp()
            transfer = Transfer(
                uuid=str(uuid.uuid4()),
                num=num,
                app_id=app_id,
                app_name=app_name,
                addon_id=addon_id,
                from_name=from_name,
                to_name="BACKUP",
                created_at=now,
                updated_at=now,
                schedule_uuid=schedule_uuid,
            )
            self._transfers.append(transfer)
            self._save()
            return transfer

    def transfers(self, app_id: str) -> list[Transfer]:
        """The app's transfers that are not deleted, oldest first (newest last)."""
        with self._lock:
            return [t for t in self._transfers if t.app_id == app_id and t.deleted_at is None]

    def unfinished(self) -> list[Transfer]:
        with self._lock:
            return [t for t in self._transfers if t.finished_at is None and t.deleted_at is None]

    def find(self, app_id: str, ident: str) -> Transfer | None:
        """A live transfer of the app by number (``3``) or uuid."""
        for transfer in self.transfers(app_id):
            if (ident.isdigit() and transfer.num == int(ident)) or transfer.uuid == ident:
                return transfer
        return None

    def by_uuid(self, transfer_uuid: str) -> Transfer | None:
        with self._lock:
            return next((t for t in self._transfers if t.uuid == transfer_uuid), None)

    def update(self, transfer: Transfer, *, log: tuple[str, str] | None = None, **changes: Any) -> Transfer:
        """Change fields (and append a ``(level, message)`` log line), stamp updated_at, save."""
        with self._lock:
            now = timestamp()
            for key, value in changes.items():
                if not hasattr(transfer, key):
                    raise AttributeError(f"a transfer has no field {key!r}")
                setattr(transfer, key, value)
            if log is not None:
                transfer.logs.append({"created_at": now, "level": log[0], "message": log[1]})
            transfer.updated_at = now
            self._save()
            return transfer

    def delete(self, transfer: Transfer) -> Transfer:
        """Mark the transfer deleted and remove its archive. Idempotent."""
        with self._lock:
            if transfer.deleted_at is None:
                self.update(transfer, deleted_at=timestamp())
            self.dump_path(transfer).unlink(missing_ok=True)
            return transfer

    # -- schedules -------------------------------------------------------------------------------

    def schedules(self, addon_id: str | None = None) -> list[Schedule]:
        with self._lock:
            return [s for s in self._schedules if addon_id is None or s.addon_id == addon_id]

    def put_schedule(self, addon_id: str, name: str, hour: int, timezone: str) -> Schedule:
        """Create the schedule, or change the add-on's schedule of that name (names are unique)."""
        with self._lock:
            now = timestamp()
            for schedule in self._schedules:
                if schedule.addon_id == addon_id and schedule.name == name:
                    schedule.hour, schedule.timezone, schedule.updated_at = hour, timezone, now
                    break
            else:
                schedule = Schedule(
                    uuid=str(uuid.uuid4()),
                    addon_id=addon_id,
                    name=name,
                    hour=hour,
                    timezone=timezone,
                    created_at=now,
                    updated_at=now,
                )
                self._schedules.append(schedule)
            self._save()
            return schedule

    def mark_schedule_run(self, schedule: Schedule, local_date: str) -> None:
        with self._lock:
            schedule.last_run_on = local_date
            self._save()

    def delete_schedule(self, addon_id: str, ident: str) -> Schedule | None:
        """Remove the add-on's schedule by uuid or name; the removed schedule, or None."""
        with self._lock:
            for schedule in self._schedules:
                if schedule.addon_id == addon_id and ident in (schedule.uuid, schedule.name):
                    self._schedules.remove(schedule)
                    self._save()
                    return schedule
            return None
