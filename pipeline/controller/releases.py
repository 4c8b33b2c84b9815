"""Moving one release: what its state needs observed (``observe``), the pure decision
(``domain.decide``), and each action carried out (``effects``, ``feedback``, the stage guard), in
the one reconcile loop; then the release's last word, its pull request's description, and when to
look at it again.

A release that waits on a person or on CI is looked at again only every ``LOOK_EVERY`` seconds (or
when a webhook says something happened), so quick passes that follow another release's build do
not spend the Bitbucket rate budget re-reading an unchanged pull request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from pipeline import domain
from pipeline.controller.effects import ReleaseEffects
from pipeline.controller.feedback import Feedback
from pipeline.controller.history import History
from pipeline.controller.observe import ReleaseObserver
from pipeline.controller.reconcile import reconcile
from pipeline.controller.report import ReleaseReport
from pipeline.controller.stage import StageGuard
from pipeline.errors import Temporary
from pipeline.model import Release
from pipeline.ports import ReleaseStore

log = logging.getLogger("pipeline.controller")

# At most this many decide/act rounds for one release in one pass (a pass moves a release as far
# as it can go without waiting; the bound keeps a mistake from spinning).
ROUNDS_PER_PASS = 12
LOOK_EVERY = 10.0  # seconds between two looks at a release waiting on a person or CI, unless told to
WINDOW_LOOK_EVERY = 60.0  # at most between two looks at a release waiting for a window or a freeze


class ReleaseRunner:
    """The releases' side of the reconcile loop (``reconcile.Runner`` for a ``Release``)."""

    def __init__(
        self,
        store: ReleaseStore,
        policy: domain.Policy,
        clock: Callable[[], datetime],
        observer: ReleaseObserver,
        effects: ReleaseEffects,
        feedback: Feedback,
        guard: StageGuard,
        history: History,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.observer = observer
        self.effects = effects
        self.feedback = feedback
        self.guard = guard
        self.history = history
        self._parked: dict[int, tuple[float, domain.Wait]] = {}  # release id -> (look again at, wait)
        self._look = False  # the release being advanced was asked to be looked at (a webhook)

    def advance(self, release: Release, *, look: bool = False) -> ReleaseReport:
        """Move one release as far as it goes without waiting (``look``: even if it is parked)."""
        assert release.id is not None
        release_id = release.id
        parked = self._parked.get(release_id)
        if parked is not None and not look and time.monotonic() < parked[0]:
            return ReleaseReport(release_id, release.commit, release.state, False, parked[1])
        self._parked.pop(release_id, None)
        self._look = look
        outcome = reconcile(self, release, self.clock, rounds=ROUNDS_PER_PASS, label=f"release {release_id}")
        release, wait = outcome.subject, outcome.wait
        if outcome.state_changed:
            self._parked.clear()  # a move may concern the others (supersession, a free stage)
        if wait is not None and wait.detail != release.reason:
            # What it waits on is the release's last word until it moves again (``pipeline status``).
            release = self.history.save(release, {"reason": wait.detail})
        if outcome.moved:
            self.guard.spend_override(release)
        try:
            release = self.feedback.describe(release)
        except Temporary as exc:
            log.warning("release %s: the release pull request's description waits: %s", release.id, exc)
        if wait is not None:
            self._park(release_id, wait)
        return ReleaseReport(release_id, release.commit, release.state, outcome.moved, wait)

    def _park(self, release_id: int, wait: domain.Wait) -> None:
        """A release waiting on a person, CI or another release is looked at again every
        ``LOOK_EVERY`` seconds; one waiting for a deploy window or a freeze's end, when it opens (at
        least every ``WINDOW_LOOK_EVERY``: its approval is judged again before it goes anyway). A
        webhook's pass looks at once, and a release that moves unparks the others."""
        if wait.on == domain.WaitingOn.WINDOW:
            until = (wait.until - self.clock()).total_seconds() if wait.until else WINDOW_LOOK_EVERY
            self._parked[release_id] = (
                time.monotonic() + min(max(until, LOOK_EVERY), WINDOW_LOOK_EVERY),
                wait,
            )
        elif wait.on in (domain.WaitingOn.PERSON, domain.WaitingOn.CI, domain.WaitingOn.STAGE):
            self._parked[release_id] = (time.monotonic() + LOOK_EVERY, wait)

    # --- reconcile.Runner -----------------------------------------------------------------------

    def observe(self, release: Release, now: datetime) -> domain.Observation:
        return self.observer.observe(release, now, look_now=self._look)

    def decide(self, release: Release, seen: domain.Observation, now: datetime) -> domain.ReleaseDecision:
        return domain.decide(release, seen, self.policy, now)

    def reload(self, release: Release) -> Release:
        assert release.id is not None
        return self.store.get(release.id)

    def standing_wait(self, release: Release) -> domain.Wait | None:
        return domain.Wait(domain.WaitingOn.PERSON, release.reason)

    def act(self, release: Release, action: domain.Action) -> Release:
        effects, feedback = self.effects, self.feedback
        match action:
            case domain.Update():
                return self.history.apply(release, action)
            case domain.PostStatus():
                feedback.post_status(release, action)
                return release
            case domain.NotifyChanges():
                return feedback.notify_changes(release, action)
            case domain.DeclinePullRequest():
                return feedback.decline(release, action)
            case domain.LockEnvironment():
                self.guard.lock(action.stage, release, action.reason)
                return release
            case domain.DeployToStaging():
                return effects.deploy_to_staging(release)
            case domain.OpenReleasePullRequest():
                return effects.open_pull_request(release)
            case domain.CaptureBackup():
                return effects.capture_backup(release)
            case domain.Promote():
                return effects.promote(release)
            case domain.RollBack():
                return effects.roll_back(release, action)
            case domain.MergePullRequest():
                return effects.merge(release)
            case domain.OpenBackMerge():
                return effects.open_back_merge(release)
        raise AssertionError(f"no way to carry out {action!r}")
