"""Rollbacks people ask for (``pipeline rollback``): ``decide_rollback`` moves one from requested to
verified, unverified or failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pipeline.domain.actions import (
    Decision,
    RollbackDecision,
    RollBackEnvironment,
    RollbackUpdate,
    TakeOut,
    Update,
    Wait,
    WaitingOn,
)
from pipeline.domain.policy import Policy, Verification
from pipeline.domain.verification import Verdict, Verifying, checks_summary, verify
from pipeline.model import (
    CheckResult,
    Dyno,
    EventKind,
    HerokuRelease,
    Rollback,
    RollbackState,
)


@dataclass(frozen=True)
class RollbackObservation:
    """What a pass saw for a rollback: the new Heroku release (by id, or found by its description
    "Rollback to vN" since the write-ahead mark), then the dynos and the due checks' attempts."""

    heroku_release: HerokuRelease | None = None
    dynos: tuple[Dyno, ...] | None = None
    checks: Mapping[int, CheckResult] | None = None
    effect_refused: bool = False


def decide_rollback(
    rollback: Rollback, seen: RollbackObservation, rules: Verification, policy: Policy, now: datetime
) -> RollbackDecision:
    """What to do next for a rollback a person asked for: roll back (once, adopting a Heroku release
    made before a crash), wait for it, take the releases out, verify what runs with the stage's
    checks. Ends verified, unverified (it runs but fails its checks: a person must look) or failed."""
    state = rollback.state
    to = f"v{rollback.to_version}"
    if state.is_final:
        return Decision(())
    release = seen.heroku_release
    if state == RollbackState.REQUESTED:
        if release is not None:
            why = f"{rollback.app} v{release.version} runs {to}'s slug"
            started: RollbackUpdate = Update(
                EventKind.RollbackStarted,
                why,
                RollbackState.ROLLING_BACK,
                {"heroku_release_id": release.id, "heroku_version": release.version, "pending_since": None},
            )
            return Decision((started,))
        grace = (
            rollback.pending_since is not None
            and not seen.effect_refused
            and now - rollback.pending_since < policy.intent_grace
        )
        if grace:
            why = f"a rollback to {to} was requested; waiting for Heroku to list it"
            return Decision((Wait(WaitingOn.HEROKU, why),))
        return Decision((RollBackEnvironment(),))
    assert release is not None, "a rollback past requested knows its Heroku release"
    if state == RollbackState.ROLLING_BACK:
        if release.status == "pending":
            why = f"{rollback.app} v{release.version} running its release phase"
            return Decision((Wait(WaitingOn.HEROKU, why),))
        if release.status != "succeeded":
            why = (
                f"Heroku's rollback release v{release.version} {release.status}: {rollback.app} still runs "
                f"v{rollback.from_version}"
            )
            failed: RollbackUpdate = Update(
                EventKind.RollbackFailed, why, RollbackState.FAILED, {"outcome": why}
            )
            return Decision((failed,))
        why = f"{rollback.app} v{release.version} is live; verifying it"
        live: RollbackUpdate = Update(
            EventKind.RollbackReleased,
            why,
            RollbackState.VERIFYING,
            {"verification_started_at": now, "check_progress": ()},
        )
        return Decision((TakeOut(), live))
    verdict = verify(
        rules.checks,
        rollback.check_progress,
        seen.checks,
        seen.dynos,
        stage=Verifying.ROLLBACK,
        version=release.version,
        started=rollback.verification_started_at,
        now=now,
        dyno_start_timeout=policy.dyno_start_timeout,
    )
    attempts = _updates(verdict)
    again = f"{rollback.app} runs {to} again (now v{release.version})"
    if verdict.failed is not None:
        why = f"{again} but it fails its checks: {verdict.failed}"
        unverified: RollbackUpdate = Update(
            EventKind.RollbackUnverified,
            why,
            RollbackState.UNVERIFIED,
            {"outcome": why, "check_progress": verdict.progress},
            detail=verdict.evidence,
        )
        return Decision((*attempts, unverified))
    if not verdict.passed:
        return Decision((*attempts, *(() if verdict.wait is None else (verdict.wait,))))
    why = f"{again}, verified: {checks_summary(verdict.progress)}"
    verified: RollbackUpdate = Update(
        EventKind.RollbackVerified,
        why,
        RollbackState.VERIFIED,
        {"outcome": why, "verified_at": now, "check_progress": verdict.progress},
    )
    return Decision((*attempts, verified))


def _updates(verdict: Verdict) -> tuple[RollbackUpdate, ...]:
    """The rollback's updates for a verdict (as ``verification.release_updates`` for a release)."""
    if verdict.keep:
        keep: RollbackUpdate = Update(
            EventKind.CheckProgress, "", fields={"check_progress": verdict.progress}, silent=True
        )
        return (keep,)
    return tuple(
        Update(a.kind, a.reason, fields={"check_progress": verdict.progress}, detail=a.evidence)
        for a in verdict.attempts
    )
