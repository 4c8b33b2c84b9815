"""``pipeline serve``: passes on an APScheduler interval, one at a time, until shut down.

One interval job runs the pass; APScheduler's ``max_instances=1`` and ``coalesce`` keep passes from
overlapping or piling up, and the store's pass lock keeps two ``serve`` processes on one database
from passing at once. ``run_now(look=True)`` brings the next pass forward and makes it look at
everything (a webhook delivery); one that comes while a pass runs is remembered, and another pass
follows at once, so no delivery waits for the poll interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from pipeline.controller import PassReport, utcnow
from pipeline.errors import StoreLost

log = logging.getLogger("pipeline.scheduler")

JOB_ID = "pass"
LOOK_GAP = 2.0  # seconds at least between the starts of two passes a webhook asked for


class Scheduler:
    def __init__(self, run_pass: Callable[[bool | None], PassReport], interval: timedelta) -> None:
        """``run_pass(detect)``: one pass; ``detect`` True looks at the branch and every release now,
        None when due (see ``Controller.tick``)."""
        self._run_pass = run_pass
        self._look = threading.Event()
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        self._scheduler.add_job(
            self._safe_pass, "interval", seconds=interval.total_seconds(), id=JOB_ID, next_run_time=utcnow()
        )
        self._look.set()  # the first pass looks at everything
        self._running = threading.Event()
        # APScheduler's shutdown holds its job store lock while it waits for the running pass, and
        # a pass that ends by bringing the next one forward needs that lock: once shutdown begins
        # (under this lock), nothing asks APScheduler for anything again.
        self._lock = threading.Lock()
        self._stopping = False
        self._last_look: float | None = None  # time.monotonic() of the last pass that looked
        self.fatal: StoreLost | None = None  # why the service must stop, once a pass says so
        self.passes = 0
        self.last_pass_started_at: datetime | None = None
        self.last_pass_at: datetime | None = None

    def _safe_pass(self) -> None:
        self._running.set()
        try:
            self._pass()
        finally:
            self._running.clear()
        if self._look.is_set():  # a delivery came during the pass: it gets a pass of its own now
            self.run_now()

    def _pass(self) -> None:
        look = self._look.is_set()
        self._look.clear()
        if look:
            self._last_look = time.monotonic()
        self.last_pass_started_at = utcnow()
        try:
            report = self._run_pass(True if look else None)
        except StoreLost as exc:  # no pass may run on another store: the service stops
            log.critical("%s", exc)
            self.fatal = exc
            return
        except Exception:  # one bad pass must not stop the service; the next one tries again
            log.exception("pass failed")
            return
        self.passes += 1
        self.last_pass_at = utcnow()
        for r in report.releases:
            wait = f" - waiting on {r.wait.on}: {r.wait.detail}" if r.wait else ""
            log.info("release %s %s %s%s", r.release_id, r.commit[:12], r.state, wait)
        if report.moving:
            # Something moves by itself (a build, a check retry): look again soon, not a poll later.
            self.run_now(delay=timedelta(seconds=report.pause(utcnow())))

    def run_now(self, delay: timedelta = timedelta(0), *, look: bool = False) -> None:
        """Bring the next pass forward (it still never overlaps a running one); ``look``: something
        happened in Bitbucket (a merge, an approval), so that pass looks at everything. Passes that
        look start at most one every ``LOOK_GAP`` seconds, however many deliveries ask: a flood
        of them (replayed, say) costs a pass every couple of seconds, not one each."""
        at = utcnow() + delay
        if look:
            self._look.set()
            if self._running.is_set():
                return  # the running pass sees the flag when it ends and starts another at once
            since = time.monotonic() - self._last_look if self._last_look is not None else LOOK_GAP
            at = max(at, utcnow() + timedelta(seconds=max(LOOK_GAP - since, 0.0)))
        with self._lock:
            if self._stopping:
                return
            job = self._scheduler.get_job(JOB_ID)
            if job is None:
                return
            if look and job.next_run_time is not None and job.next_run_time <= at:
                return  # a pass comes sooner anyway, and it will look
            job.modify(next_run_time=at)

    def start(self) -> None:
        """Run passes in the background from now on."""
        self._scheduler.start()

    def shutdown(self) -> None:
        """Run no more passes; wait for the running one to finish."""
        with self._lock:
            self._stopping = True
        self._scheduler.shutdown(wait=True)
