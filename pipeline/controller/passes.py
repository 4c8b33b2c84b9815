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

from pipeline import domain
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
from pipeline.errors import LeaseLost, Permanent, Refused, Temporary
from pipeline.model import EventKind, Person, Release, State
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
        self.history = history = History(store, clock, settings.crash_at, lease=self.guard.still_held)
        checker = Checker(settings, platform, store)
        self.feedback = feedback = Feedback(settings, source, store, history, self.policy, checker.web_url)
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
        self.store.check_intact()  # StoreLost: this process must stop, not write into another store
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
        """What changes what runs on ``stage`` now (a release or a rollback), or None: what a person's
        rollback waits for. A release whose pre-promotion backup runs is no reason to wait: the
        rollback locks the stage, and that release promotes only once it is unlocked."""
        return self.guard.busy_with(stage, changing_only=True)

    @contextmanager
    def pass_lock(self, wait: float = 60.0) -> Iterator[None]:
        """Hold the pass lock (see ``StageGuard.pass_lock``)."""
        with self.guard.pass_lock(wait):
            yield

    def stage(self, name: str) -> StageSettings:
        return self.guard.stage(name)

    def abort(self, release_id: int, actor: str, reason: str) -> Release:
        """End a release a person no longer wants, before anything of it reached production: said
        on its commit and its release pull request (declined), recorded as ``aborted`` by ``actor``.
        Under the pass lock, so no pass moves it meanwhile. Refused once it is promoting (roll back
        instead) or ended."""
        with self.pass_lock():
            release = self.store.get(release_id)
            if release.state.is_final:
                raise Refused(f"release {release_id} has ended ({release.state}): there is nothing to abort")
            if not release.state.may_be_aborted:
                production = self.settings.production.name
                raise Refused(
                    f"release {release_id} is {release.state}: production runs it or is being changed "
                    f"to it; roll back instead (`pipeline rollback {production} --reason ...`)"
                )
            why = f"aborted by {actor}: {reason}"
            staged = release.state in (State.DETECTED, State.GATED) or release.state.in_staging
            key = domain.STAGING_STATUS if staged else domain.PRODUCTION_STATUS
            self.feedback.post_status(
                release, domain.PostStatus(key, "STOPPED", why[:140], release.pull_request_url)
            )
            if release.pull_request_id is not None:
                release = self.feedback.decline(
                    release,
                    domain.DeclinePullRequest(
                        f"Aborted by {actor}: {reason}. This release will not go to production."
                    ),
                )
            return self.history.record(release, EventKind.ReleaseAborted, why, to=State.ABORTED, actor=actor)
