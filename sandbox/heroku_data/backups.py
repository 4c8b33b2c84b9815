"""Capturing backups: a worker thread that really dumps the add-on's database, and the scheduler.

A capture is queued as a pending transfer; the worker takes it, marks it running, writes a real
archive with ``Databases.dump`` (``pg_dump -Fc`` for PostgreSQL, SQLite's online backup API
otherwise) and marks it finished: succeeded with ``processed_bytes`` the archive's size, or not
succeeded with the reason in its logs. Transfers still unfinished when the sandbox stopped are
run again on the next start, as Heroku's workers would pick them up again.

Schedules are checked every ``poll`` seconds: a schedule is due once per local day, during its
hour in its timezone (a sandbox that is down all that hour skips that day, as a missed cron
would); a due schedule captures a backup named ``a<NNN>``.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sandbox.databases import Databases
from sandbox.heroku.refs import AddonRef, HerokuLookup
from sandbox.heroku_data.store import BackupStore, Transfer, timestamp

log = logging.getLogger("sandbox")


class BackupWorker:
    """Runs queued captures one at a time, and scheduled captures when they are due."""

    def __init__(
        self, store: BackupStore, platform: HerokuLookup, databases: Databases, *, poll: float = 30.0
    ) -> None:
        self.store = store
        self.platform = platform
        self.databases = databases
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._poll = poll
        self._threads = [
            threading.Thread(target=self._work, name="sandbox-heroku-data-backups", daemon=True),
            threading.Thread(target=self._schedule_loop, name="sandbox-heroku-data-schedules", daemon=True),
        ]

    def start(self) -> None:
        for transfer in self.store.unfinished():
            self.store.update(transfer, log=("info", "Resuming after a restart of the sandbox"))
            self._queue.put(transfer.uuid)
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Stop both threads; a dump already running finishes first (up to pg_dump's timeout)."""
        self._stop.set()
        self._queue.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=30)

    # -- capture ---------------------------------------------------------------------------------

    def capture(self, addon: AddonRef, *, schedule_uuid: str | None = None) -> Transfer:
        """Queue a backup of the add-on's database; returns the pending transfer at once."""
        transfer = self.store.create_transfer(
            app_id=addon.app.id,
            app_name=addon.app.name,
            addon_id=addon.id,
            from_name="DATABASE",
            schedule_uuid=schedule_uuid,
        )
        self._queue.put(transfer.uuid)
        return transfer

    def _work(self) -> None:
        while True:
            transfer_uuid = self._queue.get()
            if transfer_uuid is None or self._stop.is_set():
                return
            transfer = self.store.by_uuid(transfer_uuid)
            if transfer is None or transfer.finished_at is not None or transfer.deleted_at is not None:
                continue
            try:
                self._run(transfer)
            except Exception as exc:  # a worker must survive any one backup
                log.exception("backup %s failed unexpectedly", transfer.uuid)
                self._fail(transfer, f"Internal error in the sandbox: {exc}")

    def _run(self, transfer: Transfer) -> None:
        self.store.update(transfer, started_at=timestamp(), log=("info", "Starting pg_dump of DATABASE"))
        addon = self.platform.find_addon(transfer.addon_id)
        if addon is None:
            self._fail(transfer, "The database no longer exists")
            return
        try:
            source_bytes = self.databases.size(addon.database_url)
            self.store.update(transfer, source_bytes=source_bytes)
            size = self.databases.dump(addon.database_url, self.store.dump_path(transfer))
        except Exception as exc:
            self.store.dump_path(transfer).unlink(missing_ok=True)
            self._fail(transfer, f"pg_dump failed: {exc}")
            return
        current = self.store.by_uuid(transfer.uuid)
        if current is None or current.canceled_at is not None or current.deleted_at is not None:
            self.store.dump_path(transfer).unlink(missing_ok=True)
            return
        self.store.update(transfer, log=("info", f"pg_dump finished: {size} bytes written"))
        self.store.update(
            transfer,
            processed_bytes=size,
            succeeded=True,
            finished_at=timestamp(),
            log=("info", "Upload complete"),
        )

    def _fail(self, transfer: Transfer, message: str) -> None:
        self.store.update(transfer, log=("error", message))
        self.store.update(transfer, succeeded=False, finished_at=timestamp(), log=("error", "Backup failed"))

    # -- schedules -------------------------------------------------------------------------------

    def run_due_schedules(self, now: datetime) -> list[Transfer]:
        """Capture a backup for every schedule due at ``now``; returns the transfers started."""
        started = []
        for schedule in self.store.schedules():
            local = now.astimezone(ZoneInfo(schedule.timezone))
            today = local.date().isoformat()
            if local.hour != schedule.hour or schedule.last_run_on == today:
                continue
            addon = self.platform.find_addon(schedule.addon_id)
            if addon is None:
                continue
            self.store.mark_schedule_run(schedule, today)
            started.append(self.capture(addon, schedule_uuid=schedule.uuid))
        return started

    def _schedule_loop(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.run_due_schedules(datetime.now(UTC))
            except Exception:
                log.exception("running the backup schedules failed")
