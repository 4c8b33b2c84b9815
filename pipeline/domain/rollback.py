"""Rollbacks people ask for (``pipeline rollback``): ``decide_rollback`` moves one from requested to
verified, unverified or failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pipeline.domain.actions import (
    RollbackAction,
    RollBackEnvironment,
    RollbackUpdate,
    TakeOut,
    Wait,
    WaitingOn,
)
from pipeline.domain.policy import (
    Policy,
    Verification,
)
from pipeline.domain.verification import (
    checks_summary,
    verify,
)
from pipeline.model import (
    CheckResult,
    Dyno,
    HerokuRelease,
    Rollback,
    RollbackState,
)

# --- Rollbacks asked for by people ---------------------------------------------------------------


@dataclass(frozen=True)
class RollbackSeen:
    """What a pass saw for a rollback: the new Heroku release (by id, or found by its description
    "Rollback to vN" since the write-ahead mark), then the dynos and the due checks' attempts."""

    heroku_release: HerokuRelease | None = None
    dynos: tuple[Dyno, ...] | None = None
    checks: Mapping[int, CheckResult] | None = None
    effect_refused: bool = False


def decide_rollback(
    rollback: Rollback, seen: RollbackSeen, rules: Verification, policy: Policy, now: datetime
) -> tuple[RollbackAction, ...]:
    """What to do next for a rollback a person asked for: roll back (once, adopting a Heroku release
    made before a crash), wait for it, take the releases out, verify what runs with the stage's
    checks. Ends verified, unverified (it runs but fails its checks: a person must look) or failed."""
    state = rollback.state
    to = f"v{rollback.to_version}"
    if state.is_final:
        return ()
    release = seen.heroku_release
    if state == RollbackState.REQUESTED:
        if release is not None:
            fields = {
                "heroku_release_id": release.id,
                "heroku_version": release.version,
                "pending_since": None,
            }
            why = f"{rollback.app} v{release.version} runs {to}'s slug"
            return (RollbackUpdate("RollbackStarted", why, RollbackState.ROLLING_BACK, fields),)
        grace = (
            rollback.pending_since is not None
            and not seen.effect_refused
            and now - rollback.pending_since < policy.intent_grace
        )
        if grace:
            return (
                Wait(WaitingOn.HEROKU, f"a rollback to {to} was requested; waiting for Heroku to list it"),
            )
        return (RollBackEnvironment(),)
    assert release is not None, "a rollback past requested knows its Heroku release"
    if state == RollbackState.ROLLING_BACK:
        if release.status == "pending":
            return (Wait(WaitingOn.HEROKU, f"{rollback.app} v{release.version} running its release phase"),)
        if release.status != "succeeded":
            why = (
                f"Heroku's rollback release v{release.version} {release.status}: {rollback.app} still runs "
                f"v{rollback.from_version}"
            )
            return (RollbackUpdate("RollbackFailed", why, RollbackState.FAILED, {"outcome": why}),)
        fields = {"verification_started_at": now, "check_progress": ()}
        why = f"{rollback.app} v{release.version} is live; verifying it"
        return (TakeOut(), RollbackUpdate("RollbackReleased", why, RollbackState.VERIFYING, fields))
    verdict = verify(
        rules.checks,
        rollback.check_progress,
        seen.checks,
        seen.dynos,
        stage="Rollback",
        version=release.version,
        started=rollback.verification_started_at,
        now=now,
        dyno_start_timeout=policy.dyno_start_timeout,
    )
    attempts = tuple(
        RollbackUpdate(u.kind, u.reason, fields=dict(u.fields), detail=u.detail, silent=u.silent)
        for u in verdict.updates
    )
    if verdict.failed is not None:
        again = f"{rollback.app} runs {to} again (now v{release.version})"
        why = f"{again} but it fails its checks: {verdict.failed}"
        fields = {"outcome": why, "check_progress": verdict.progress}
        return (
            *attempts,
            RollbackUpdate("RollbackUnverified", why, RollbackState.UNVERIFIED, fields, verdict.evidence),
        )
    if not verdict.passed:
        return (*attempts, *(() if verdict.wait is None else (verdict.wait,)))
    again = f"{rollback.app} runs {to} again (now v{release.version})"
    why = f"{again}, verified: {checks_summary(verdict.progress)}"
    fields = {"outcome": why, "verified_at": now, "check_progress": verdict.progress}
    return (*attempts, RollbackUpdate("RollbackVerified", why, RollbackState.VERIFIED, fields))
