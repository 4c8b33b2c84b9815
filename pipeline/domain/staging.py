"""The steps of a release from ``detected`` to ``awaiting_approval``: the gate, the staging build and
release, its verification, and the wait for approval.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipeline.domain.actions import (
    PRODUCTION_STATUS,
    STAGING_STATUS,
    Action,
    Decision,
    DeployToStaging,
    NotifyChanges,
    OpenReleasePullRequest,
    PostStatus,
    Update,
    Wait,
    WaitingOn,
    _decision,
    _wait,
)
from pipeline.domain.approval import (
    _approval_events,
    _approval_evidence,
    judge_approvals,
)
from pipeline.domain.ends import (
    _closed,
    _staging_failed,
    _supersede,
)
from pipeline.domain.gates import (
    _closed_to,
    _locked,
    _missing_text,
)
from pipeline.domain.observation import (
    Observation,
    _in_grace,
)
from pipeline.domain.policy import (
    Policy,
    approval_digest,
)
from pipeline.domain.verification import (
    _verify_release,
    checks_summary,
)
from pipeline.model import (
    Release,
    State,
)


def _detected(release: Release, seen: Observation, policy: Policy, now: datetime) -> Decision:
    if seen.newer is not None:
        return _supersede(release, seen.newer)
    if seen.production_missing:
        why = f"{release.branch} lacks {_missing_text(seen.production_missing, policy)}"
        return _decision(
            Update("GateFailed", why, State.GATE_FAILED),
            PostStatus(STAGING_STATUS, "STOPPED", why[:140]),
        )
    statuses = seen.build_statuses or {}
    failed = [k for k in policy.required_builds if statuses.get(k) in ("FAILED", "STOPPED")]
    if failed:
        listed = ", ".join(f"{k} {statuses[k]}" for k in failed)
        return _decision(
            Update("GateFailed", f"required build {listed} on {release.commit[:12]}", State.GATE_FAILED)
        )
    waiting = [k for k in policy.required_builds if statuses.get(k) != "SUCCESSFUL"]
    if waiting:
        listed = ", ".join(f"{k} ({statuses.get(k, 'not reported yet')})" for k in waiting)
        return _wait(WaitingOn.CI, f"waiting for required build {listed}")
    passed = ", ".join(policy.required_builds) or "none required"
    return _decision(Update("GatePassed", f"required builds green: {passed}", State.GATED))


def _gated(release: Release, seen: Observation, policy: Policy, now: datetime) -> Decision:
    if seen.newer is not None:
        return _supersede(release, seen.newer)
    name = policy.staging_name
    locked = _locked(name, seen.environment)
    if locked is not None:
        return _decision(locked)
    if seen.staging_busy_with is not None:
        return _wait(WaitingOn.STAGE, f"{name} is busy with {seen.staging_busy_with}")
    closed, overridden = _closed_to(release, name, seen.environment, policy.windows.get(name), now)
    if closed is not None:
        return _decision(closed)
    return _decision(
        Update(
            "StagingDeployStarted",
            f"deploying {release.commit[:12]} to {release.staging_app}{overridden}",
            State.STAGING_DEPLOYING,
        ),
        PostStatus(STAGING_STATUS, "INPROGRESS", f"Deploying to {release.staging_app}"),
        DeployToStaging(),
    )


def _staging_deploying(release: Release, seen: Observation, policy: Policy, now: datetime) -> Decision:
    build = seen.build
    if build is None:
        if _in_grace(release, seen, "deploy", policy, now):
            return _wait(WaitingOn.HEROKU, "a staging build was requested; waiting for Heroku to list it")
        return _decision(DeployToStaging())
    adopt = {"staging_build_id": build.id, "pending_action": None, "pending_since": None}
    if build.status == "pending":
        if release.staging_build_id != build.id:
            return _decision(
                Update(
                    "StagingBuildAdopted",
                    f"found build {build.id} of this commit",
                    fields=adopt,
                    refs={"build": build.id},
                ),
                Wait(WaitingOn.HEROKU, f"build {build.id} running"),
            )
        return _wait(WaitingOn.HEROKU, f"build {build.id} running")
    if build.status == "succeeded" and build.release_id is None:
        return _wait(
            WaitingOn.HEROKU, f"build {build.id} succeeded; waiting for Heroku to create its release"
        )
    if build.status != "succeeded":
        why = f"Heroku build {build.id} {build.status}; its output: {build.output_stream_url or 'none'}"
        return _staging_failed(release, "StagingBuildFailed", why, adopt, {"build": build.id})
    heroku_release = seen.heroku_release
    if heroku_release is None or heroku_release.status == "pending":
        return _wait(WaitingOn.HEROKU, f"release of build {build.id} running its release phase")
    refs = {"build": build.id, "release": heroku_release.id}
    fields: dict[str, Any] = {
        **adopt,
        "staging_release_id": heroku_release.id,
        "staging_release_version": heroku_release.version,
        "staging_slug_id": heroku_release.slug_id or build.slug_id,
    }
    if heroku_release.status != "succeeded":
        app, version = release.staging_app, heroku_release.version
        why = f"{app} v{version} {heroku_release.status}: the release phase failed"
        return _staging_failed(release, "StagingReleaseFailed", why, fields, refs)
    fields.update(verification_started_at=now, check_progress=())
    return _decision(
        Update(
            "StagingReleased",
            f"{release.staging_app} v{heroku_release.version} is live; verifying",
            State.STAGING_VERIFYING,
            fields,
            refs,
        ),
    )


def _staging_verifying(release: Release, seen: Observation, policy: Policy, now: datetime) -> Decision:
    if release.staging_verified_at is not None:
        if release.pull_request_id is None:
            return _decision(OpenReleasePullRequest())
        return _decision(
            Update(
                "ApprovalRequested",
                f"release pull request #{release.pull_request_id} opened from {release.release_branch}",
                State.AWAITING_APPROVAL,
                refs={"pull_request": str(release.pull_request_id)},
            ),
            PostStatus(
                PRODUCTION_STATUS,
                "INPROGRESS",
                f"Waiting for approval by {policy.approvers_text} on #{release.pull_request_id}",
                release.pull_request_url,
            ),
        )
    version = release.staging_release_version
    verdict = _verify_release(release, seen, policy.staging, "Staging", version, policy, now)
    if verdict.failed is not None:
        fields = {"check_progress": verdict.progress}
        return _staging_failed(
            release, "StagingVerificationFailed", verdict.failed, fields, {}, detail=verdict.evidence
        )
    if not verdict.passed:
        return _decision(*verdict.actions)
    return _decision(
        *verdict.updates,
        Update(
            "StagingVerified",
            checks_summary(verdict.progress),
            fields={"staging_verified_at": now, "check_progress": verdict.progress},
        ),
        PostStatus(STAGING_STATUS, "SUCCESSFUL", f"Verified on {release.staging_app} v{version}"),
        NotifyChanges("staging"),
        OpenReleasePullRequest(),
    )


def _awaiting_approval(release: Release, seen: Observation, policy: Policy, now: datetime) -> Decision:
    pr = seen.pull_request
    if pr is None:
        return _decision(OpenReleasePullRequest())
    closed = _closed(release, pr, seen.activity, policy)
    if closed is not None:
        return closed
    if seen.newer_verified is not None:
        return _supersede(release, seen.newer_verified)
    judged = judge_approvals(release, pr, seen.release_branch_head, policy, now, seen.activity)
    actions: list[Action] = list(_approval_events(release, judged))
    counted = [a for a in judged if a.counted and a.kind == "approval"]
    if len(counted) >= policy.min_approvals:
        who = ", ".join(a.user.username for a in counted)
        actions.append(
            Update(
                "ReleaseApproved",
                f"approved by {who} (approval policy {approval_digest(policy)})",
                State.APPROVED,
                {"approvals": judged, "approved_at": now},
                {"pull_request": str(pr.id), "policy": approval_digest(policy)},
                actor=who,
                detail=_approval_evidence(counted, policy),
            )
        )
        return _decision(*actions)
    missing = policy.min_approvals - len(counted)
    approvers = policy.approvers_text
    # What keeps an approver's own approval from counting is what they need to know first.
    blocked = [
        a.reason
        for a in judged
        if a.kind == "approval" and not a.counted and a.user.is_one_of(policy.approvers)
    ]
    because = f" ({'; '.join(blocked)})" if blocked else ""
    actions.append(
        Wait(
            WaitingOn.PERSON,
            f"waiting for {missing} more approval(s) from {approvers} on pull request #{pr.id}{because}",
        )
    )
    return _decision(*actions)
