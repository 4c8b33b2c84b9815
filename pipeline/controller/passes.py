"""One reconcile pass of one pipeline: the rollbacks people asked for, new candidates, then every
active release, each moved as far as it goes without waiting.

A pass never waits on Heroku or Bitbucket: it looks, lets ``pipeline.domain`` decide, does what was
decided (each effect marked pending in the store before it runs, its id recorded as soon as it is
known) and moves on. The next pass picks up where this one stopped, after a crash too.

Releases are advanced newest first, so that a newer candidate's pull request exists by the time an
older one is superseded and its decline comment can point at it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from pipeline.config import Settings, StageSettings
from pipeline.controller.checking import Checker
from pipeline.controller.detect import Detector
from pipeline.controller.effects import ReleaseEffects
from pipeline.controller.feedback import Feedback
from pipeline.controller.history import History
from pipeline.controller.observe import ReleaseObserver
from pipeline.controller.policy import policy_of
from pipeline.controller.releases import ReleaseRunner
from pipeline.controller.report import PassReport
from pipeline.controller.rollbacks import RollbackRunner
from pipeline.controller.stage import StageGuard
from pipeline.errors import LeaseLost, Permanent, Temporary
from pipeline.model import Person, Release
from pipeline.ports import Backups, Platform, ReleaseStore, SourceControl

log = logging.getLogger("pipeline.controller")

DETECT_EVERY = 5.0  # seconds between two looks at the watched branch, unless told to look


def utcnow() -> datetime:
    return datetime.now(UTC)


class Controller:
    """Moves one pipeline's releases along the path. Build it with ``pipeline.bootstrap``."""

    def __init__(
        self,
        settings: Settings,
        source: SourceControl,
        platform: Platform,
        backups: Backups,
        store: ReleaseStore,
        *,
        controller_account: Person | None = None,
        approvers: frozenset[str] | None = None,
        reviewers: tuple[str, ...] = (),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.source = source
        self.platform = platform
        self.backups = backups
        self.store = store
        self.clock = clock
        self.policy = policy_of(settings, controller_account, approvers)
        self.guard = StageGuard(settings, store, clock)
        history = History(store, clock, settings.crash_at, lease=self.guard.still_held)
        checker = Checker(settings, platform, store)
        feedback = Feedback(settings, source, store, history, self.policy, checker.web_url)
        effects = ReleaseEffects(
            settings, source, platform, backups, history, feedback, reviewers, fence=self.guard.fence
        )
        observer = ReleaseObserver(
            settings, source, platform, backups, store, self.guard, checker, effects.refused
        )
        self.detector = Detector(settings, source, store, history, clock)
        self.releases = ReleaseRunner(
            store, self.policy, clock, observer, effects, feedback, self.guard, history
        )
        self.rollbacks = RollbackRunner(
            platform, store, clock, self.guard, checker, feedback, history, self.policy
        )
        self._last_detect: float | None = None

    def tick(self, *, detect: bool | None = None) -> PassReport:
        """One pass over the pipeline: detect a new candidate, then move every active release.

        ``detect``: True looks at the watched branch now (a push was reported); None looks when the
        last look is ``DETECT_EVERY`` old, so quick passes that follow a build do not spend the
        Bitbucket rate budget (1,000 requests an hour) re-reading an unchanged branch."""
        guard = self.guard
        if not guard.take():
            return PassReport(
                skipped=f"another pass of {self.settings.name} is running ({guard.holder_now()})"
            )
        report = PassReport()
        try:
            self._pass(report, detect)
        except LeaseLost as exc:
            # Paused or slowed past the lease: whatever this process read may be stale, and another
            # may be acting on it; nothing more is written or asked for here.
            log.error("%s", exc)
            report.skipped = f"{exc}; the holder of the lock carries on"
        finally:
            guard.give_back()
        return report

    def _pass(self, report: PassReport, detect: bool | None) -> None:
        # Rollbacks people asked for come first: while one runs, nothing deploys there.
        for rollback in self.store.rollbacks(self.settings.name, active=True):
            report.rollbacks.append(self.rollbacks.advance(rollback))
        due = self._last_detect is None or time.monotonic() - self._last_detect >= DETECT_EVERY
        if detect or (detect is None and due):
            try:
                self._last_detect = time.monotonic()
                report.detected = self.detector.detect()
            except Temporary as exc:
                log.warning("detection deferred: %s", exc)
            except Permanent as exc:
                log.error("cannot look for new candidates: %s", exc)
                report.problem = f"cannot look for new candidates: {exc}"
        for release in self.store.active(self.settings.name):
            if not self.guard.renew():
                # The lease ran out and another process took it: stop before doing anything twice.
                report.skipped = "the pass lock was lost mid-pass; the other holder carries on"
                break
            report.releases.append(self.releases.advance(release, look=bool(detect)))

    # --- What services ask of the controller ----------------------------------------------------

    def candidate(self, branch: str, head: str, production_head: str | None) -> Release | None:
        """A new release of ``head`` of ``branch`` (see ``Detector.candidate``)."""
        return self.detector.candidate(branch, head, production_head)

    def busy_with(self, stage: str) -> str | None:
        """What deploys to ``stage`` now (a release or a rollback), or None."""
        return self.guard.busy_with(stage)

    @contextmanager
    def pass_lock(self, wait: float = 60.0) -> Iterator[None]:
        """Hold the pass lock (see ``StageGuard.pass_lock``)."""
        with self.guard.pass_lock(wait):
            yield

    def stage(self, name: str) -> StageSettings:
        return self.guard.stage(name)
