"""Carrying out the rollbacks people ask for (``pipeline rollback ENV``), in the controller's passes,
the way releases move: the decision is ``domain.decide_rollback``; the new Heroku release's id is
recorded before anything waits on it (a pass that died in between finds it by its description,
"Rollback to vN", since the mark); then the releases taken out end ``rolled_back`` (their commit
status and merged pull requests say who and why); then the stage's checks verify what runs.

The runner gets only what it needs: the platform, the store, the clock, the stage guard, the check
runner and the feedback; never the controller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from pipeline import domain
from pipeline.controller.checking import Checker, StageLook
from pipeline.controller.feedback import Feedback
from pipeline.controller.history import History
from pipeline.controller.observe import CLOCK_SKEW
from pipeline.controller.policy import verification_of
from pipeline.controller.reconcile import reconcile
from pipeline.controller.report import RollbackReport
from pipeline.controller.stage import StageGuard
from pipeline.errors import ExternalError, Permanent
from pipeline.model import Event, EventKind, Rollback, RollbackState, State
from pipeline.ports import Platform, ReleaseStore

log = logging.getLogger("pipeline.controller")

ROUNDS = 8


class RollbackRunner:
    """The rollbacks' side of the reconcile loop (``reconcile.Runner`` for a ``Rollback``)."""

    def __init__(
        self,
        platform: Platform,
        store: ReleaseStore,
        clock: Callable[[], datetime],
        guard: StageGuard,
        checker: Checker,
        feedback: Feedback,
        history: History,
        policy: domain.Policy,
    ) -> None:
        self.platform = platform
        self.store = store
        self.clock = clock
        self.guard = guard
        self.checker = checker
        self.feedback = feedback
        self.history = history
        self.policy = policy
        self._refused: set[int] = set()  # rollbacks whose Heroku call was answered with an error

    def advance(self, rollback: Rollback) -> RollbackReport:
        assert rollback.id is not None
        outcome = reconcile(self, rollback, self.clock, rounds=ROUNDS, label=f"rollback {rollback.id}")
        done = outcome.subject
        return RollbackReport(rollback.id, done.environment, done.state, outcome.moved, outcome.wait)

    # --- reconcile.Runner -----------------------------------------------------------------------

    def observe(self, rollback: Rollback, now: datetime) -> domain.RollbackObservation:
        refused = rollback.id in self._refused
        if rollback.heroku_release_id is not None:
            release = self.platform.release(rollback.app, rollback.heroku_release_id)
            look = StageLook()
            if rollback.state == RollbackState.VERIFYING and release.status == "succeeded":
                commit = self.checker.commit_of_slug(release.slug_id)
                stage = self.guard.stage(rollback.environment)
                look = self.checker.look(stage, commit, release.version, rollback.check_progress, now)
            return domain.RollbackObservation(
                heroku_release=release, dynos=look.dynos, checks=look.checks, effect_refused=refused
            )
        if rollback.pending_since is not None:
            # Asked before a crash: Heroku lists a release "Rollback to vN" made since the mark.
            since = rollback.pending_since - CLOCK_SKEW
            wanted = f"Rollback to v{rollback.to_version}"
            found = next(
                (
                    r
                    for r in self.platform.releases(rollback.app)
                    if r.description.startswith(wanted)
                    and r.created_at >= since
                    and r.version > rollback.from_version
                ),
                None,
            )
            return domain.RollbackObservation(heroku_release=found, effect_refused=refused)
        return domain.RollbackObservation(effect_refused=refused)

    def decide(
        self, rollback: Rollback, seen: domain.RollbackObservation, now: datetime
    ) -> domain.RollbackDecision:
        rules = verification_of(self.guard.stage(rollback.environment))
        return domain.decide_rollback(rollback, seen, rules, self.policy, now)

    def reload(self, rollback: Rollback) -> Rollback:
        assert rollback.id is not None
        return self.store.rollback(rollback.id)

    def standing_wait(self, rollback: Rollback) -> domain.Wait | None:
        return None

    def act(self, rollback: Rollback, action: domain.RollbackAction) -> Rollback:
        match action:
            case domain.Update():
                return self.history.apply_rollback(rollback, action)
            case domain.RollBackEnvironment():
                return self._roll_back(rollback)
            case domain.TakeOut():
                self._take_out(rollback)
                return rollback
        raise AssertionError(f"no way to carry out {action!r}")

    # --- Effects --------------------------------------------------------------------------------

    def _roll_back(self, rollback: Rollback) -> Rollback:
        """Write-ahead mark, then the Heroku rollback; its release's id is recorded at once."""
        self._refused.discard(rollback.id or 0)
        mark: domain.RollbackUpdate = domain.Update(
            EventKind.HerokuRollbackRequested,
            f"asking Heroku to run v{rollback.to_version}'s slug on {rollback.app} again",
            fields={"pending_since": self.clock()},
        )
        rollback = self.history.apply_rollback(rollback, mark)
        try:
            self.guard.fence()
            created = self.platform.rollback(rollback.app, rollback.to_release_id)
        except ExternalError as exc:
            if exc.status is not None:
                self._refused.add(rollback.id or 0)
            if not isinstance(exc, Permanent):
                raise
            why = (
                f"Heroku refused the rollback to v{rollback.to_version}: {exc}; "
                f"{rollback.app} still runs v{rollback.from_version}"
            )
            failed: domain.RollbackUpdate = domain.Update(
                EventKind.RollbackFailed, why, RollbackState.FAILED, {"outcome": why}
            )
            return self.history.apply_rollback(rollback, failed)
        started: domain.RollbackUpdate = domain.Update(
            EventKind.RollbackStarted,
            f"{rollback.app} v{created.version} runs v{rollback.to_version}'s slug",
            RollbackState.ROLLING_BACK,
            {"heroku_release_id": created.id, "heroku_version": created.version, "pending_since": None},
        )
        return self.history.apply_rollback(rollback, started)

    def _take_out(self, rollback: Rollback) -> None:
        """The controller's releases the rollback took off the stage end ``rolled_back``, saying
        who and why on their commits and merged pull requests first (idempotent)."""
        why = (
            f"rolled back by {rollback.requested_by} (rollback {rollback.id}): {rollback.reason}; "
            f"{rollback.app} runs v{rollback.to_version} again"
        )
        for taken in rollback.taken_out:
            if taken.release_id is None:
                continue
            release = self.store.get(taken.release_id)
            if release.state == State.ROLLED_BACK:
                continue
            release = replace(release, reason=why)
            status = f"Rolled back by {rollback.requested_by} to v{rollback.to_version}: {rollback.reason}"
            self.feedback.post_status(
                release, domain.PostStatus(domain.PRODUCTION_STATUS, "FAILED", status[:140])
            )
            release = self.feedback.notify_changes(release, domain.NotifyChanges("rolled_back"))
            now = self.clock()
            event = Event(
                release.id,
                now,
                EventKind.RolledBackByHand,
                rollback.requested_by,
                why,
                state_from=release.state,
                state_to=State.ROLLED_BACK,
                refs={"rollback": str(rollback.id)},
                environment=rollback.environment,
            )
            self.store.save(replace(release, state=State.ROLLED_BACK, updated_at=now), [event])
