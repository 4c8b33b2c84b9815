"""The steps of a release from ``approved`` to its end: the backup, the promotion, production's
verification (and the rollback when it fails), the merge and the backup check.
"""

from __future__ import annotations

from datetime import datetime

from pipeline.domain.actions import (
    PRODUCTION_STATUS,
    Action,
    CaptureBackup,
    DeclinePullRequest,
    LockEnvironment,
    MergePullRequest,
    NotifyChanges,
    OpenBackMerge,
    PostStatus,
    Promote,
    ReleaseDecision,
    RollBack,
    Update,
    Wait,
    WaitingOn,
    decision,
    wait,
)
from pipeline.domain.approval import LOSING_EVENTS, approval_events, judge_approvals
from pipeline.domain.backups import backup_problem
from pipeline.domain.ends import failed_target, promotion_failed, rejection, supersede
from pipeline.domain.gates import closed_to, locked, missing_text
from pipeline.domain.observation import Observation, in_grace
from pipeline.domain.policy import Policy
from pipeline.domain.text import span_text
from pipeline.domain.verification import (
    Verdict,
    Verifying,
    checks_summary,
    release_actions,
    release_updates,
    verify_release,
)
from pipeline.model import EventKind, HerokuRelease, Intent, Release, ReleaseChanges, State


def _approved(release: Release, seen: Observation, policy: Policy, now: datetime) -> ReleaseDecision:
    if seen.newer_approved is not None:
        # A newer release (which contains this one) is approved or already in production: promoting
        # this one after it would take production back.
        return supersede(release, seen.newer_approved)
    recheck = approval_recheck(release, seen, policy, now)
    if recheck is not None:
        return recheck
    name = policy.production_name
    if seen.production_missing:
        lacks = missing_text(seen.production_missing, policy)
        why = f"production has moved past it: {release.branch} lacks {lacks}"
        actions: list[Action] = [
            Update(EventKind.ReleaseSuperseded, why, State.SUPERSEDED),
            PostStatus(PRODUCTION_STATUS, "STOPPED", why[:140]),
        ]
        if release.pull_request_id is not None:
            actions.append(DeclinePullRequest(f"Not promoted: {why}."))
        return decision(*actions)
    lock = locked(name, seen.environment)
    if lock is not None:
        return decision(lock)
    if seen.production_busy_with is not None:
        return wait(WaitingOn.STAGE, f"{name} is busy with {seen.production_busy_with}")
    closed, overridden = closed_to(release, name, seen.environment, policy.windows.get(name), now)
    if closed is not None:
        return decision(closed)
    if policy.capture_backup:
        return decision(
            Update(
                EventKind.BackupStarted,
                f"capturing a backup of {release.production_app}'s database{overridden}",
                State.BACKING_UP,
            ),
            PostStatus(PRODUCTION_STATUS, "INPROGRESS", f"Backing up {release.production_app}"),
            CaptureBackup(),
        )
    return decision(
        Update(
            EventKind.PromotionStarted,
            f"promoting without a backup (backups.capture_before_promotion is off){overridden}",
            State.PROMOTING,
        ),
        PostStatus(PRODUCTION_STATUS, "INPROGRESS", f"Promoting to {release.production_app}"),
        Promote(),
    )


def approval_recheck(
    release: Release, seen: Observation, policy: Policy, now: datetime
) -> ReleaseDecision | None:
    """Approval is re-checked at the moment of promotion, not only when it was given: None when it
    still holds and there is nothing new to record; else the decision (rejected, withdrawn, expired,
    voided by a move of the release branch, or the events of approvals judged since)."""
    pr = seen.pull_request
    if pr is None:
        return None
    closed = rejection(release, pr, seen.activity, policy)
    if closed is not None:
        return closed
    judged = judge_approvals(release, pr, seen.release_branch_head, policy, now, seen.activity)
    actions: list[Action] = list(approval_events(release, judged))
    if sum(a.counted and a.kind == "approval" for a in judged) < policy.approval.min_approvals:
        lost = [u.reason for u in actions if isinstance(u, Update) and u.kind in LOSING_EVENTS]
        lost = lost or [a.reason for a in judged if not a.counted and a.kind == "approval"]
        why = "; ".join(lost) or "approval withdrawn"
        actions.append(
            Update(
                EventKind.ApprovalLost,
                why,
                State.AWAITING_APPROVAL,
                # A backup taken for this promotion is no longer fresh by the time it is approved
                # again: the next promotion captures its own (this one stays in the history).
                {"approvals": judged, "approved_at": None, "backup_id": None, "backup_name": None},
            )
        )
        actions.append(
            PostStatus(
                PRODUCTION_STATUS,
                "INPROGRESS",
                f"Approval no longer holds; waiting for approval on #{pr.id}",
                release.pull_request_url,
            )
        )
        return decision(*actions)
    return decision(*actions) if actions else None


def _backing_up(release: Release, seen: Observation, policy: Policy, now: datetime) -> ReleaseDecision:
    if seen.pull_request is not None:
        # A person may end the release while its backup runs (declined, changes requested).
        closed = rejection(release, seen.pull_request, seen.activity, policy)
        if closed is not None:
            return closed
    backup = seen.backup
    if backup is None:
        if in_grace(release, seen, Intent.BACKUP, policy, now):
            return wait(WaitingOn.HEROKU, "a backup was requested; waiting for Heroku to list it")
        return decision(CaptureBackup())
    fields: ReleaseChanges = {
        "backup_id": backup.id,
        "backup_name": backup.name,
        "pending_action": None,
        "pending_since": None,
    }
    refs = {"backup": backup.id}
    if backup.status in ("pending", "running"):
        ran = now - backup.created_at
        if ran > policy.capture_timeout:
            why = (
                f"backup {backup.name} of {release.production_app} has run for {span_text(ran)}, longer than "
                f"backups.capture_timeout ({span_text(policy.capture_timeout)}): production was not changed; "
                f"the backup goes on at Heroku (`heroku pg:backups:cancel -a {release.production_app}` "
                "stops it)"
            )
            return decision(
                Update(EventKind.BackupTimedOut, why, State.PROMOTION_FAILED, fields, refs),
                PostStatus(PRODUCTION_STATUS, "FAILED", f"Backup {backup.name} took too long; not promoted"),
            )
        if release.backup_id != backup.id:
            return decision(
                Update(
                    EventKind.BackupAdopted,
                    f"found backup {backup.name} started for this release",
                    fields=fields,
                    refs=refs,
                ),
                Wait(WaitingOn.HEROKU, f"backup {backup.name} {backup.status}"),
            )
        return wait(WaitingOn.HEROKU, f"backup {backup.name} {backup.status}")
    if backup.status != "completed":
        logs = "; ".join(backup.logs[-3:]) or "no logs"
        why = f"backup {backup.name} of {release.production_app} failed ({logs}); production was not changed"
        return decision(
            Update(EventKind.BackupFailed, why, State.PROMOTION_FAILED, fields, refs),
            PostStatus(PRODUCTION_STATUS, "FAILED", f"Backup {backup.name} failed; not promoted"),
        )
    recheck = approval_recheck(release, seen, policy, now)
    if recheck is not None and any(isinstance(a, Update) and a.to is not None for a in recheck.actions):
        return decision(
            Update(EventKind.BackupCaptured, f"backup {backup.name} completed", fields=fields, refs=refs),
            *recheck.actions,
        )
    hold = _held(release, seen, policy, now)
    if hold is not None:
        # Locked (a person's rollback, a failed verification) while the backup ran: the promotion
        # waits, and takes a fresh backup when it goes.
        why = f"backup {backup.name} completed, but {hold}; the promotion waits"
        postponed: ReleaseChanges = {
            "backup_id": None,
            "backup_name": None,
            "pending_action": None,
            "pending_since": None,
        }
        return decision(
            Update(EventKind.PromotionPostponed, why, State.APPROVED, postponed, refs),
            PostStatus(PRODUCTION_STATUS, "INPROGRESS", why[:140], release.pull_request_url),
        )
    return decision(
        Update(
            EventKind.BackupCaptured,
            f"backup {backup.name} completed ({backup.size_bytes} bytes)",
            State.PROMOTING,
            fields,
            refs,
        ),
        Promote(),
    )


def _held(release: Release, seen: Observation, policy: Policy, now: datetime) -> str | None:
    """Why production may not be changed now after all: locked meanwhile (a person's rollback, a
    failed verification). A freeze or a deploy window is judged when the deployment starts (its
    backup), not again here: an override given for it was spent then."""
    lock = locked(policy.production_name, seen.environment)
    return lock.detail if lock is not None else None


def _promoting(release: Release, seen: Observation, policy: Policy, now: datetime) -> ReleaseDecision:
    target = seen.heroku_release
    promotion = seen.promotion
    if target is None:
        failed = failed_target(promotion)
        if failed is not None:
            return promotion_failed(release, failed, {"promotion": promotion.id} if promotion else {})
        if release.promotion_id is not None or in_grace(release, seen, Intent.PROMOTE, policy, now):
            return wait(WaitingOn.HEROKU, "promotion running")
        return decision(Promote())
    fields: ReleaseChanges = {
        "production_release_id": target.id,
        "production_release_version": target.version,
        "pending_action": None,
        "pending_since": None,
    }
    refs = {"release": target.id} | ({"promotion": promotion.id} if promotion else {})
    if target.status == "pending":
        if release.production_release_id != target.id:
            return decision(
                Update(
                    EventKind.ProductionReleaseStarted,
                    f"{release.production_app} v{target.version} running its release phase",
                    fields=fields,
                    refs=refs,
                ),
                Wait(WaitingOn.HEROKU, f"{release.production_app} v{target.version} release phase"),
            )
        return wait(WaitingOn.HEROKU, f"{release.production_app} v{target.version} release phase")
    if target.status != "succeeded":
        why = (
            f"{release.production_app} v{target.version} {target.status}: its release phase failed, "
            f"so Heroku kept v{release.previous_release_version} running"
        )
        return promotion_failed(release, why, refs, fields)
    return decision(
        Update(
            EventKind.ProductionReleased,
            f"{release.production_app} v{target.version} is live; verifying",
            State.PRODUCTION_VERIFYING,
            {**fields, "verification_started_at": now, "check_progress": ()},
            refs,
        ),
    )


def _production_verifying(
    release: Release, seen: Observation, policy: Policy, now: datetime
) -> ReleaseDecision:
    if release.pending_action == Intent.ROLLBACK or release.rollback_release_id is not None:
        return _rolling_back(release, seen, policy, now)
    version = release.production_release_version
    verdict = verify_release(release, seen, policy.production, Verifying.PRODUCTION, version, policy, now)
    if verdict.failed is not None:
        outcome = verdict.failed
        if release.previous_release_id is None:
            why = f"{outcome}; nothing to roll back to (production had no release before)"
            return promotion_failed(release, why, {})
        return decision(
            Update(
                EventKind.ProductionVerificationFailed,
                outcome,
                fields={
                    "reason": outcome,
                    "rollback_reason": outcome,
                    "pending_action": Intent.ROLLBACK,
                    "pending_since": now,
                    "check_progress": verdict.progress,
                },
                detail=verdict.evidence,
            ),
            LockEnvironment(policy.production_name, outcome),
            RollBack(release.previous_release_id, release.previous_release_version, outcome),
        )
    if not verdict.passed:
        return decision(*release_actions(verdict))
    return decision(
        *release_updates(verdict),
        Update(
            EventKind.Released,
            f"{release.commit[:12]} runs on {release.production_app} v{version}, verified: "
            + checks_summary(verdict.progress),
            State.RELEASED,
            {"released_at": now, "check_progress": verdict.progress},
        ),
        PostStatus(PRODUCTION_STATUS, "SUCCESSFUL", f"Released on {release.production_app} v{version}"),
        NotifyChanges("production"),
    )


def _rolling_back(release: Release, seen: Observation, policy: Policy, now: datetime) -> ReleaseDecision:
    """Production failed its checks: roll it back to the release it replaced, lock it, and verify
    what runs again before the release ends."""
    rollback = seen.rollback_release
    previous = f"v{release.previous_release_version}"
    cause = release.rollback_reason or release.reason  # (a release marked before the field existed)
    lock = LockEnvironment(policy.production_name, cause)
    if rollback is None:
        if in_grace(release, seen, Intent.ROLLBACK, policy, now):
            return decision(
                lock,
                Wait(
                    WaitingOn.HEROKU, f"a rollback to {previous} was requested; waiting for Heroku to list it"
                ),
            )
        assert release.previous_release_id is not None
        return decision(lock, RollBack(release.previous_release_id, release.previous_release_version, cause))
    if release.rollback_release_id != rollback.id:
        adopted: ReleaseChanges = {
            "rollback_release_id": rollback.id,
            "rollback_release_version": rollback.version,
            "pending_action": None,
            "pending_since": None,
            "verification_started_at": now,
            "check_progress": (),
        }
        why = f"found {release.production_app} v{rollback.version}, the rollback to {previous}"
        return decision(
            lock, Update(EventKind.RollbackAdopted, why, fields=adopted, refs={"release": rollback.id})
        )
    if rollback.status == "pending":
        return wait(WaitingOn.HEROKU, f"rollback release v{rollback.version} running its release phase")
    if rollback.status != "succeeded":
        app = release.production_app
        why = (
            f"{cause}; the rollback to {previous} failed too "
            f"(v{rollback.version} {rollback.status}). "
            f"Production runs v{release.production_release_version}: roll back by hand "
            f"(`pipeline rollback {policy.production_name} --to <version> --reason ...`, or "
            f"`heroku releases:rollback -a {app}`)"
        )
        return promotion_failed(release, why, {"release": rollback.id})
    verdict = verify_release(
        release, seen, policy.production, Verifying.ROLLBACK, rollback.version, policy, now
    )
    if verdict.failed is not None:
        return _rolled_back(release, rollback, policy, now, verdict, unverified=verdict.failed)
    if not verdict.passed:
        return decision(lock, *release_actions(verdict))
    return _rolled_back(release, rollback, policy, now, verdict)


def _rolled_back(
    release: Release,
    rollback: HerokuRelease,
    policy: Policy,
    now: datetime,
    verdict: Verdict,
    *,
    unverified: str | None = None,
) -> ReleaseDecision:
    """The rollback runs and was verified (or fails its checks too): record the end, keep production
    locked, and say so on the commit, the merged pull requests and the release pull request."""
    cause = release.rollback_reason or release.reason
    previous = f"v{release.previous_release_version}"
    app, name = release.production_app, policy.production_name
    if unverified is None:
        after = f"rolled {app} back to {previous} (now v{rollback.version}), which passed its checks"
        status = f"Rolled back to {previous}: production verification failed"
    else:
        after = (
            f"rolled {app} back to {previous} (now v{rollback.version}), but it fails its checks too "
            f"({unverified}): production needs a person"
        )
        status = f"Rolled back to {previous}, which fails its checks too"
    why = f"{cause}; {after}; {name} is locked until `pipeline unlock {name} --reason ...`"
    return decision(
        *release_updates(verdict),
        Update(
            EventKind.RolledBack,
            why,
            State.ROLLED_BACK,
            {
                "rollback_release_id": rollback.id,
                "rollback_release_version": rollback.version,
                "rollback_verified_at": now if unverified is None else None,
                "pending_action": None,
                "pending_since": None,
                "check_progress": verdict.progress,
            },
            {"release": rollback.id},
            detail=verdict.evidence,
        ),
        LockEnvironment(name, cause),
        PostStatus(PRODUCTION_STATUS, "FAILED", status),
        NotifyChanges("rolled_back"),
        DeclinePullRequest(f"Production verification failed: {cause}. {app} was rolled back to {previous}."),
    )


def _released(release: Release, seen: Observation, policy: Policy, now: datetime) -> ReleaseDecision:
    pr = seen.pull_request
    if pr is not None and pr.state == "OPEN" and "merge" not in release.feedback:
        return _merging(release, pr.id, seen, policy, now)  # merged first: the release ends after
    actions: list[Action] = []
    if (
        pr is not None
        and pr.state == "MERGED"
        and (release.merge_task or release.pending_action == Intent.MERGE)
    ):
        # Merged by a task Bitbucket ran, or before a crash: say so once.
        actions.append(
            Update(
                EventKind.ReleasePullRequestMerged,
                f"#{pr.id} merged into {policy.production_branch}",
                fields={"merge_task": None, "pending_action": None, "pending_since": None},
                refs={"pull_request": str(pr.id), "commit": pr.merge_commit},
            )
        )
    elif pr is not None and pr.state not in ("OPEN", "MERGED"):
        who = pr.closed_by.username if pr.closed_by else "someone"
        actions.append(
            Update(
                EventKind.ReleaseNotMerged,
                f"release pull request #{pr.id} was {pr.state.lower()} by {who} after the promotion: "
                "production runs this release but the production branch does not have it; merge it by hand",
            )
        )
    if release.branch != policy.source_branch and "backmerge" not in release.feedback:
        actions.append(OpenBackMerge())  # a hotfix, merged into production's branch: develop needs it too
    problem = backup_problem(seen.latest_backup, policy.backup_max_age, now)
    if problem is None:
        assert seen.latest_backup is not None
        b = seen.latest_backup
        return decision(
            *actions,
            Update(
                EventKind.BackupsVerified,
                f"newest backup {b.name} completed {b.finished_at}, {b.size_bytes} bytes",
                State.BACKUPS_VERIFIED,
                refs={"backup": b.id},
            ),
        )
    refs = {"backup": seen.latest_backup.id} if seen.latest_backup else {}
    return decision(
        *actions, Update(EventKind.BackupsUnverified, problem, State.BACKUPS_UNVERIFIED, refs=refs)
    )


def _merging(
    release: Release, pr_id: int, seen: Observation, policy: Policy, now: datetime
) -> ReleaseDecision:
    """The release pull request is merged once: asked for, or a merge task Bitbucket runs waited for
    (never asked for twice while one may run)."""
    merge = seen.merge
    if release.merge_task is not None and merge is not None and merge.status == "merged":
        return decision(
            Update(
                EventKind.ReleasePullRequestMerged,
                f"#{pr_id} merged into {policy.production_branch} by Bitbucket's merge task",
                fields={"merge_task": None, "pending_action": None, "pending_since": None},
                refs={"pull_request": str(pr_id), "commit": merge.commit},
            )
        )
    if release.merge_task is not None and merge is not None and merge.status == "failed":
        said = merge.detail or "no reason given"
        why = (
            f"Bitbucket's merge of release pull request #{pr_id} failed: {said}; "
            "production runs the release: merge it by hand"
        )
        return decision(
            Update(
                EventKind.ReleaseMergeFailed,
                why,
                fields={
                    "merge_task": None,
                    "pending_action": None,
                    "pending_since": None,
                    "feedback": (*release.feedback, "merge"),
                },
            )
        )
    if release.merge_task is not None:
        return wait(WaitingOn.BITBUCKET, f"Bitbucket is merging release pull request #{pr_id}")
    if in_grace(release, seen, Intent.MERGE, policy, now):
        return wait(WaitingOn.BITBUCKET, f"a merge of release pull request #{pr_id} was asked for")
    return decision(MergePullRequest())


# The steps of this part of the path, by the state they move a release from.
STEPS = {
    State.APPROVED: _approved,
    State.BACKING_UP: _backing_up,
    State.PROMOTING: _promoting,
    State.PRODUCTION_VERIFYING: _production_verifying,
    State.RELEASED: _released,
}
