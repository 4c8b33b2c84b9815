"""The steps of a release from ``detected`` to ``awaiting_approval``: the gate, the staging build and
release, its verification, and the wait for approval.
"""

from __future__ import annotations

from datetime import datetime

from pipeline.domain.actions import (
    PRODUCTION_STATUS,
    STAGING_STATUS,
    Action,
    DeployToStaging,
    NotifyChanges,
    OpenReleasePullRequest,
    PostStatus,
    ReleaseDecision,
    Update,
    Wait,
    WaitingOn,
    decision,
    wait,
)
from pipeline.domain.approval import approval_events, approval_evidence, judge_approvals
from pipeline.domain.ends import rejection, staging_failed, supersede
from pipeline.domain.gates import closed_to, locked, missing_text
from pipeline.domain.observation import Observation, in_grace
from pipeline.domain.policy import Policy
from pipeline.domain.verification import (
    Verifying,
    checks_summary,
    release_actions,
    release_updates,
    verify_release,
)
from pipeline.model import EventKind, Intent, Release, ReleaseChanges, State


def _detected(release: Release, seen: Observation, policy: Policy, now: datetime) -> ReleaseDecision:
    if seen.newer is not None:
        return supersede(release, seen.newer)
    if seen.production_missing:
        why = f"{release.branch} lacks {missing_text(seen.production_missing, policy)}"
        return decision(
            Update(EventKind.GateFailed, why, State.GATE_FAILED),
            PostStatus(STAGING_STATUS, "STOPPED", why[:140]),
        )
    statuses = seen.build_statuses or {}
    failed = [k for k in policy.required_builds if statuses.get(k) in ("FAILED", "STOPPED")]
    if failed:
        listed = ", ".join(f"{k} {statuses[k]}" for k in failed)
        why = f"required build {listed} on {release.commit[:12]}"
        return decision(Update(EventKind.GateFailed, why, State.GATE_FAILED))
    waiting = [k for k in policy.required_builds if statuses.get(k) != "SUCCESSFUL"]
    if waiting:
        listed = ", ".join(f"{k} ({statuses.get(k, 'not reported yet')})" for k in waiting)
        return wait(WaitingOn.CI, f"waiting for required build {listed}")
    passed = ", ".join(policy.required_builds) or "none required"
    return decision(Update(EventKind.GatePassed, f"required builds green: {passed}", State.GATED))


def _gated(release: Release, seen: Observation, policy: Policy, now: datetime) -> ReleaseDecision:
    if seen.newer is not None:
        return supersede(release, seen.newer)
    name = policy.staging_name
    lock = locked(name, seen.environment)
    if lock is not None:
        return decision(lock)
    if seen.staging_busy_with is not None:
        return wait(WaitingOn.STAGE, f"{name} is busy with {seen.staging_busy_with}")
    closed, overridden = closed_to(release, name, seen.environment, policy.windows.get(name), now)
    if closed is not None:
        return decision(closed)
    return decision(
        Update(
            EventKind.StagingDeployStarted,
            f"deploying {release.commit[:12]} to {release.staging_app}{overridden}",
            State.STAGING_DEPLOYING,
        ),
        PostStatus(STAGING_STATUS, "INPROGRESS", f"Deploying to {release.staging_app}"),
        DeployToStaging(),
    )


def _staging_deploying(release: Release, seen: Observation, policy: Policy, now: datetime) -> ReleaseDecision:
    build = seen.build
    if build is None:
        if in_grace(release, seen, Intent.DEPLOY, policy, now):
            return wait(WaitingOn.HEROKU, "a staging build was requested; waiting for Heroku to list it")
        return decision(DeployToStaging())
    adopt: ReleaseChanges = {"staging_build_id": build.id, "pending_action": None, "pending_since": None}
    if build.status == "pending":
        if release.staging_build_id != build.id:
            return decision(
                Update(
                    EventKind.StagingBuildAdopted,
                    f"found build {build.id} of this commit",
                    fields=adopt,
                    refs={"build": build.id},
                ),
                Wait(WaitingOn.HEROKU, f"build {build.id} running"),
            )
        return wait(WaitingOn.HEROKU, f"build {build.id} running")
    if build.status == "succeeded" and build.release_id is None:
        return wait(WaitingOn.HEROKU, f"build {build.id} succeeded; waiting for Heroku to create its release")
    if build.status != "succeeded":
        why = f"Heroku build {build.id} {build.status}; its output: {build.output_stream_url or 'none'}"
        return staging_failed(release, EventKind.StagingBuildFailed, why, adopt, {"build": build.id})
    heroku_release = seen.heroku_release
    if heroku_release is None or heroku_release.status == "pending":
        return wait(WaitingOn.HEROKU, f"release of build {build.id} running its release phase")
    refs = {"build": build.id, "release": heroku_release.id}
    fields: ReleaseChanges = {
        **adopt,
        "staging_release_id": heroku_release.id,
        "staging_release_version": heroku_release.version,
        "staging_slug_id": heroku_release.slug_id or build.slug_id,
    }
    if heroku_release.status != "succeeded":
        app, version = release.staging_app, heroku_release.version
        why = f"{app} v{version} {heroku_release.status}: the release phase failed"
        return staging_failed(release, EventKind.StagingReleaseFailed, why, fields, refs)
    return decision(
        Update(
            EventKind.StagingReleased,
            f"{release.staging_app} v{heroku_release.version} is live; verifying",
            State.STAGING_VERIFYING,
            {**fields, "verification_started_at": now, "check_progress": ()},
            refs,
        ),
    )


def _staging_verifying(release: Release, seen: Observation, policy: Policy, now: datetime) -> ReleaseDecision:
    if release.staging_verified_at is not None:
        if release.pull_request_id is None:
            return decision(OpenReleasePullRequest())
        return decision(
            Update(
                EventKind.ApprovalRequested,
                f"release pull request #{release.pull_request_id} opened from {release.release_branch}",
                State.AWAITING_APPROVAL,
                refs={"pull_request": str(release.pull_request_id)},
            ),
            PostStatus(
                PRODUCTION_STATUS,
                "INPROGRESS",
                f"Waiting for approval by {policy.approval.approvers_text} on #{release.pull_request_id}",
                release.pull_request_url,
            ),
        )
    version = release.staging_release_version
    verdict = verify_release(release, seen, policy.staging, Verifying.STAGING, version, policy, now)
    if verdict.failed is not None:
        fields: ReleaseChanges = {"check_progress": verdict.progress}
        failed = EventKind.StagingVerificationFailed
        return staging_failed(release, failed, verdict.failed, fields, {}, detail=verdict.evidence)
    if not verdict.passed:
        return decision(*release_actions(verdict))
    return decision(
        *release_updates(verdict),
        Update(
            EventKind.StagingVerified,
            checks_summary(verdict.progress),
            fields={"staging_verified_at": now, "check_progress": verdict.progress},
        ),
        PostStatus(STAGING_STATUS, "SUCCESSFUL", f"Verified on {release.staging_app} v{version}"),
        NotifyChanges("staging"),
        OpenReleasePullRequest(),
    )


def _awaiting_approval(release: Release, seen: Observation, policy: Policy, now: datetime) -> ReleaseDecision:
    pr = seen.pull_request
    if pr is None:
        return decision(OpenReleasePullRequest())
    closed = rejection(release, pr, seen.activity, policy)
    if closed is not None:
        return closed
    if seen.newer_verified is not None:
        return supersede(release, seen.newer_verified)
    judged = judge_approvals(release, pr, seen.release_branch_head, policy, now, seen.activity)
    actions: list[Action] = list(approval_events(release, judged))
    counted = [a for a in judged if a.counted and a.kind == "approval"]
    rules = policy.approval
    if len(counted) >= rules.min_approvals:
        who = ", ".join(a.user.username for a in counted)
        actions.append(
            Update(
                EventKind.ReleaseApproved,
                f"approved by {who} (approval policy {rules.digest})",
                State.APPROVED,
                {"approvals": judged, "approved_at": now},
                {"pull_request": str(pr.id), "policy": rules.digest},
                actor=who,
                detail=approval_evidence(counted, policy),
            )
        )
        return decision(*actions)
    missing = rules.min_approvals - len(counted)
    approvers = rules.approvers_text
    # What keeps an approver's own approval from counting is what they need to know first.
    blocked = [
        a.reason
        for a in judged
        if a.kind == "approval" and not a.counted and a.user.is_one_of(rules.approvers)
    ]
    because = f" ({'; '.join(blocked)})" if blocked else ""
    actions.append(
        Wait(
            WaitingOn.PERSON,
            f"waiting for {missing} more approval(s) from {approvers} on pull request #{pr.id}{because}",
        )
    )
    return decision(*actions)


# The steps of this part of the path, by the state they move a release from.
STEPS = {
    State.DETECTED: _detected,
    State.GATED: _gated,
    State.STAGING_DEPLOYING: _staging_deploying,
    State.STAGING_VERIFYING: _staging_verifying,
    State.AWAITING_APPROVAL: _awaiting_approval,
}
