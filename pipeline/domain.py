"""The release state machine: ``decide(release, observation, policy, now) -> Decision``.

Pure: no I/O, no clock, no environment. The controller observes Bitbucket and Heroku into an
``Observation``, calls ``decide``, carries out the ``Decision``'s actions in order and records them.
Every branch here is exercised with plain values in ``tests/unit/test_domain.py``.

The path (see ``State``)::

    detected -> gated -> staging_deploying -> staging_verifying -> awaiting_approval -> approved
      -> backing_up -> promoting -> production_verifying -> released -> backups_verified

Effects that create something on Heroku or Bitbucket are marked pending (``pending_action``,
``pending_since``) before they run. When a pass finds the mark but not the id, the observation
looks for the effect by its natural key (the build of this commit, a backup or a production release
created since the mark); ``decide`` adopts what it finds, waits through ``Policy.intent_grace`` for
an answer that may still come, and only then does the effect again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any

from pipeline.model import (
    Approval,
    Backup,
    CheckProgress,
    CheckResult,
    Commit,
    DeployWindows,
    Dyno,
    EnvironmentState,
    HerokuBuild,
    HerokuRelease,
    Participant,
    Person,
    Promotion,
    PullRequest,
    PullRequestActivity,
    Release,
    Rollback,
    RollbackState,
    State,
)

CONTROLLER = "controller"

# Events by which a counted approval stops counting.
LOSING_EVENTS = frozenset({"ApprovalWithdrawn", "ApprovalVoided"})

# Commit status keys, one per stage, as developers see them on the commit in Bitbucket.
STAGING_STATUS = "pipeline/staging"
PRODUCTION_STATUS = "pipeline/production"


# No wait between two attempts of a check is longer than this, whatever its backoff.
MAX_CHECK_WAIT = timedelta(minutes=5)


@dataclass(frozen=True)
class CheckRule:
    """How one check is tried: ``retries`` more attempts after one that did not pass, ``interval``
    apart (times ``backoff`` after each failure in a row, at most ``MAX_CHECK_WAIT``), and once it
    passes, ``soak``: it keeps being tried every ``interval`` for that long, and a failure then fails."""

    name: str
    retries: int = 3
    interval: timedelta = timedelta(seconds=2)
    backoff: float = 1.0
    soak: timedelta = timedelta(0)

    def wait_after(self, failures: int) -> timedelta:
        """The wait before the next attempt after ``failures`` attempts in a row did not pass."""
        factor = self.backoff ** max(failures - 1, 0)
        return min(self.interval * factor, MAX_CHECK_WAIT)


@dataclass(frozen=True)
class Verification:
    """How a stage is verified: every check, each with its own rule."""

    checks: tuple[CheckRule, ...] = ()


@dataclass(frozen=True)
class Policy:
    """The rules of one pipeline, from its configuration."""

    required_builds: tuple[str, ...] = ()
    # Who may approve: their uuids and account ids once pinned to accounts at start (a nickname
    # alone can be taken by anyone), and the names people wrote, for messages.
    approvers: frozenset[str] = frozenset()
    approver_names: tuple[str, ...] = ()
    min_approvals: int = 1
    controller_account: Person | None = None
    # An approval older than this at the moment it is judged (promotion included) does not count.
    approval_max_age: timedelta | None = timedelta(hours=72)
    authors_may_approve: bool = False
    unlinked_authors: str = "block"  # block | allow
    staging: Verification = Verification()
    production: Verification = Verification()
    capture_backup: bool = True
    # How long the new release's dynos may take to start before verification fails.
    dyno_start_timeout: timedelta = timedelta(minutes=2)
    backup_max_age: timedelta = timedelta(hours=26)
    # How long an effect marked pending may take to show up on Heroku before it is done again: an
    # answer lost in a crash is processed within a request timeout, and Heroku lists builds,
    # backups and releases as soon as it accepts them.
    intent_grace: timedelta = timedelta(seconds=20)
    # The stages' names (as in `pipeline freeze production`) and when a deployment of each may start.
    staging_name: str = "staging"
    production_name: str = "production"
    windows: Mapping[str, DeployWindows] = field(default_factory=dict)
    # The watched branch (releases of other branches are hotfixes) and the production branch.
    source_branch: str = "develop"
    production_branch: str = "main"

    @property
    def approvers_text(self) -> str:
        return ", ".join(self.approver_names or sorted(self.approvers))

    @cached_property
    def digest(self) -> str:
        """``approval_digest(self)``, computed once (the policy is frozen)."""
        text = json.dumps(approval_policy(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def approval_policy(policy: Policy) -> dict[str, Any]:
    """The rules approvals are judged by, as plain JSON: what ``approval_digest`` digests, and what
    the history keeps beside each approval so an auditor can see the rules it was judged under."""
    bot = policy.controller_account
    return {
        "approvers": sorted(policy.approvers),
        "min_approvals": policy.min_approvals,
        "max_age_seconds": policy.approval_max_age.total_seconds() if policy.approval_max_age else None,
        "authors_may_approve": policy.authors_may_approve,
        "unlinked_authors": policy.unlinked_authors,
        "controller_account": (bot.uuid or bot.account_id or bot.username) if bot else None,
        "bound_to": "the commit verified on staging; any move of the release branch voids earlier approvals",
    }


def approval_digest(policy: Policy) -> str:
    """A short, stable digest of ``approval_policy(policy)`` (16 hex characters of its SHA-256)."""
    return policy.digest


def pin_approvers(
    names: tuple[str, ...], members: list[Person]
) -> tuple[frozenset[str], list[tuple[int, str]]]:
    """The account ids and uuids of the workspace members ``names`` designate (a username, an
    account id or a {uuid} each), and the problems: (index, why) for a name that designates nobody,
    or more than one member (Bitbucket nicknames are neither unique nor fixed)."""
    pinned: set[str] = set()
    problems: list[tuple[int, str]] = []
    for index, name in enumerate(names):
        found = [m for m in members if m.is_one_of((name,))]
        if not found:
            problems.append(
                (
                    index,
                    f"{name!r} is no member of the workspace: give a member's username, "
                    "account id or {uuid}",
                )
            )
        elif len(found) > 1:
            ids = ", ".join(m.account_id or m.uuid for m in found)
            problems.append(
                (
                    index,
                    f"{name!r} is the username of {len(found)} members ({ids}): "
                    "give the account id or {uuid} of the one who approves",
                )
            )
        else:
            pinned.update(ident for ident in (found[0].uuid, found[0].account_id) if ident)
    return frozenset(pinned), problems


@dataclass(frozen=True)
class Observation:
    """What a pass saw for one release. Fields the release's state does not need stay None."""

    build_statuses: Mapping[str, str] | None = None
    build: HerokuBuild | None = None
    heroku_release: HerokuRelease | None = None
    # The attempts made in this pass, by the check's position in the stage's list (None: none).
    checks: Mapping[int, CheckResult] | None = None
    pull_request: PullRequest | None = None
    release_branch_head: str | None = None
    backup: Backup | None = None
    promotion: Promotion | None = None
    live_release: HerokuRelease | None = None
    rollback_release: HerokuRelease | None = None
    latest_backup: Backup | None = None
    newer: Release | None = None
    newer_verified: Release | None = None
    newer_approved: Release | None = None
    dynos: tuple[Dyno, ...] | None = None
    # The release pull request's activity, newest first (moves of the release branch, comments).
    activity: tuple[PullRequestActivity, ...] = ()
    # What else deploys to the stage now ("release 7", "rollback 2 by ops"), and what people decided
    # about the stage this release is about to deploy to (lock, freeze, override).
    staging_busy_with: str | None = None
    production_busy_with: str | None = None
    environment: EnvironmentState | None = None
    # Commits production's branch has (not merges) that the release lacks: promoting it would take
    # them out of production (a hotfix not merged back). None: not looked at.
    production_missing: tuple[Commit, ...] | None = None
    # The effect marked pending was refused (an HTTP error answer) in this process: it did not
    # happen, or what did is already visible; no reason to wait out ``Policy.intent_grace``.
    effect_refused: bool = False


# --- Actions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Update:
    """Record an event, and change state and fields. ``to`` None keeps the state; ``detail`` is
    longer evidence kept with the event."""

    kind: str
    reason: str
    to: State | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    refs: Mapping[str, str] = field(default_factory=dict)
    actor: str = CONTROLLER
    detail: str = ""
    silent: bool = False  # save the fields only: no event (a soak that goes on)


@dataclass(frozen=True)
class DeployToStaging:
    """Archive the commit, upload it to Heroku, start a build labelled with the commit."""


@dataclass(frozen=True)
class OpenReleasePullRequest:
    """Pin ``release/<id>`` at the commit and open the release pull request with its notes."""


@dataclass(frozen=True)
class DeclinePullRequest:
    comment: str


@dataclass(frozen=True)
class CaptureBackup:
    """Capture a production database backup."""


@dataclass(frozen=True)
class Promote:
    """Promote the verified staging release (its slug) to production."""


@dataclass(frozen=True)
class RollBack:
    """Roll production back to ``release_id`` (a new release of the old slug)."""

    release_id: str
    version: int | None
    why: str


@dataclass(frozen=True)
class LockEnvironment:
    """Lock a stage: the controller deploys nothing to it until a person unlocks it. Idempotent:
    a stage already locked keeps its first lock."""

    stage: str
    reason: str


@dataclass(frozen=True)
class OpenBackMerge:
    """A hotfix reached production: open a pull request from the production branch into the watched
    branch, so the next candidate carries the fix too (once; idempotent)."""


@dataclass(frozen=True)
class MergePullRequest:
    """Merge the release pull request into the production branch."""


@dataclass(frozen=True)
class PostStatus:
    """Post the stage's commit status on the release's commit (the same key overwrites). ``url``:
    where it links (default: the stage's app)."""

    key: str
    state: str  # INPROGRESS | SUCCESSFUL | FAILED | STOPPED
    description: str
    url: str | None = None


@dataclass(frozen=True)
class NotifyChanges:
    """Comment on every pull request merged into the release that its change reached ``stage``
    (``staging`` or ``production``) or was taken out again (``rolled_back``). Once per pull request
    and stage: a change already announced on staging by an earlier release is not announced again."""

    stage: str


class WaitingOn(StrEnum):
    """Why a release does not move now. ``moves_by_itself`` says whether it will without anyone."""

    HEROKU = "heroku"  # a build, release phase, promotion or backup is running
    RETRY = "retry"  # a check is to be tried again shortly
    STAGE = "stage"  # another release is using the stage
    CI = "ci"  # required builds have not finished
    PERSON = "person"  # approval, or someone has to fix something
    WINDOW = "window"  # a freeze, or the deploy window is closed: the clock or a person

    @property
    def moves_by_itself(self) -> bool:
        return self in (WaitingOn.HEROKU, WaitingOn.RETRY)


@dataclass(frozen=True)
class Wait:
    on: WaitingOn
    detail: str
    until: datetime | None = None


Effect = DeployToStaging | OpenReleasePullRequest | DeclinePullRequest | CaptureBackup | Promote | RollBack
Feedback = PostStatus | DeclinePullRequest | NotifyChanges | LockEnvironment
Action = Update | Effect | MergePullRequest | OpenBackMerge | Feedback | Wait


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]

    @property
    def wait(self) -> Wait | None:
        return next((a for a in self.actions if isinstance(a, Wait)), None)

    @property
    def does_something(self) -> bool:
        return any(not isinstance(a, Wait) for a in self.actions)


def _decision(*actions: Action) -> Decision:
    """The actions in the order they run: feedback first (commit statuses, declining a pull
    request, comments on the merged pull requests: idempotent, so safe to repeat), then the rest as
    given. A crash right after a release reaches a final state then never loses the feedback that
    goes with it."""
    feedback = tuple(a for a in actions if isinstance(a, Feedback))
    return Decision(feedback + tuple(a for a in actions if not isinstance(a, Feedback)))


def _wait(on: WaitingOn, detail: str, until: datetime | None = None) -> Decision:
    return _decision(Wait(on, detail, until))


# --- The decision -----------------------------------------------------------------------------


def decide(release: Release, seen: Observation, policy: Policy, now: datetime) -> Decision:
    """What to do next for ``release``, given what was just seen. Final states: nothing."""
    if release.state.is_final:
        return _decision()
    step = _STEPS[release.state]
    return step(release, seen, policy, now)


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


def _approved(release: Release, seen: Observation, policy: Policy, now: datetime) -> Decision:
    if seen.newer_approved is not None:
        # A newer release (which contains this one) is approved or already in production: promoting
        # this one after it would take production back.
        return _supersede(release, seen.newer_approved)
    recheck = _approval_recheck(release, seen, policy, now)
    if recheck is not None:
        return recheck
    name = policy.production_name
    if seen.production_missing:
        lacks = _missing_text(seen.production_missing, policy)
        why = f"production has moved past it: {release.branch} lacks {lacks}"
        actions: list[Action] = [
            Update("ReleaseSuperseded", why, State.SUPERSEDED),
            PostStatus(PRODUCTION_STATUS, "STOPPED", why[:140]),
        ]
        if release.pull_request_id is not None:
            actions.append(DeclinePullRequest(f"Not promoted: {why}."))
        return _decision(*actions)
    locked = _locked(name, seen.environment)
    if locked is not None:
        return _decision(locked)
    if seen.production_busy_with is not None:
        return _wait(WaitingOn.STAGE, f"{name} is busy with {seen.production_busy_with}")
    closed, overridden = _closed_to(release, name, seen.environment, policy.windows.get(name), now)
    if closed is not None:
        return _decision(closed)
    if policy.capture_backup:
        return _decision(
            Update(
                "BackupStarted",
                f"capturing a backup of {release.production_app}'s database{overridden}",
                State.BACKING_UP,
            ),
            PostStatus(PRODUCTION_STATUS, "INPROGRESS", f"Backing up {release.production_app}"),
            CaptureBackup(),
        )
    return _decision(
        Update(
            "PromotionStarted",
            f"promoting without a backup (backups.capture_before_promotion is off){overridden}",
            State.PROMOTING,
        ),
        PostStatus(PRODUCTION_STATUS, "INPROGRESS", f"Promoting to {release.production_app}"),
        Promote(),
    )


def _approval_recheck(release: Release, seen: Observation, policy: Policy, now: datetime) -> Decision | None:
    """Approval is re-checked at the moment of promotion, not only when it was given: None when it
    still holds and there is nothing new to record; else the decision (rejected, withdrawn, expired,
    voided by a move of the release branch, or the events of approvals judged since)."""
    pr = seen.pull_request
    if pr is None:
        return None
    closed = _closed(release, pr, seen.activity, policy)
    if closed is not None:
        return closed
    judged = judge_approvals(release, pr, seen.release_branch_head, policy, now, seen.activity)
    actions: list[Action] = list(_approval_events(release, judged))
    if sum(a.counted and a.kind == "approval" for a in judged) < policy.min_approvals:
        lost = [u.reason for u in actions if isinstance(u, Update) and u.kind in LOSING_EVENTS]
        lost = lost or [a.reason for a in judged if not a.counted and a.kind == "approval"]
        why = "; ".join(lost) or "approval withdrawn"
        actions.append(
            Update(
                "ApprovalLost",
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
        return _decision(*actions)
    return _decision(*actions) if actions else None


def _backing_up(release: Release, seen: Observation, policy: Policy, now: datetime) -> Decision:
    backup = seen.backup
    if backup is None:
        if _in_grace(release, seen, "backup", policy, now):
            return _wait(WaitingOn.HEROKU, "a backup was requested; waiting for Heroku to list it")
        return _decision(CaptureBackup())
    fields: dict[str, Any] = {
        "backup_id": backup.id,
        "backup_name": backup.name,
        "pending_action": None,
        "pending_since": None,
    }
    refs = {"backup": backup.id}
    if backup.status in ("pending", "running"):
        if release.backup_id != backup.id:
            return _decision(
                Update(
                    "BackupAdopted",
                    f"found backup {backup.name} started for this release",
                    fields=fields,
                    refs=refs,
                ),
                Wait(WaitingOn.HEROKU, f"backup {backup.name} {backup.status}"),
            )
        return _wait(WaitingOn.HEROKU, f"backup {backup.name} {backup.status}")
    if backup.status != "completed":
        logs = "; ".join(backup.logs[-3:]) or "no logs"
        why = f"backup {backup.name} of {release.production_app} failed ({logs}); production was not changed"
        return _decision(
            Update("BackupFailed", why, State.PROMOTION_FAILED, fields, refs),
            PostStatus(PRODUCTION_STATUS, "FAILED", f"Backup {backup.name} failed; not promoted"),
        )
    recheck = _approval_recheck(release, seen, policy, now)
    if recheck is not None and any(isinstance(a, Update) and a.to is not None for a in recheck.actions):
        return _decision(
            Update("BackupCaptured", f"backup {backup.name} completed", fields=fields, refs=refs),
            *recheck.actions,
        )
    return _decision(
        Update(
            "BackupCaptured",
            f"backup {backup.name} completed ({backup.size_bytes} bytes)",
            State.PROMOTING,
            fields,
            refs,
        ),
        Promote(),
    )


def _promoting(release: Release, seen: Observation, policy: Policy, now: datetime) -> Decision:
    target = seen.heroku_release
    promotion = seen.promotion
    if target is None:
        failed = _failed_target(promotion)
        if failed is not None:
            return _promotion_failed(release, failed, {"promotion": promotion.id} if promotion else {})
        if release.promotion_id is not None or _in_grace(release, seen, "promote", policy, now):
            return _wait(WaitingOn.HEROKU, "promotion running")
        return _decision(Promote())
    fields: dict[str, Any] = {
        "production_release_id": target.id,
        "production_release_version": target.version,
        "pending_action": None,
        "pending_since": None,
    }
    refs = {"release": target.id} | ({"promotion": promotion.id} if promotion else {})
    if target.status == "pending":
        if release.production_release_id != target.id:
            return _decision(
                Update(
                    "ProductionReleaseStarted",
                    f"{release.production_app} v{target.version} running its release phase",
                    fields=fields,
                    refs=refs,
                ),
                Wait(WaitingOn.HEROKU, f"{release.production_app} v{target.version} release phase"),
            )
        return _wait(WaitingOn.HEROKU, f"{release.production_app} v{target.version} release phase")
    if target.status != "succeeded":
        why = (
            f"{release.production_app} v{target.version} {target.status}: its release phase failed, "
            f"so Heroku kept v{release.previous_release_version} running"
        )
        return _promotion_failed(release, why, refs, fields)
    fields.update(verification_started_at=now, check_progress=())
    return _decision(
        Update(
            "ProductionReleased",
            f"{release.production_app} v{target.version} is live; verifying",
            State.PRODUCTION_VERIFYING,
            fields,
            refs,
        ),
    )


def _production_verifying(release: Release, seen: Observation, policy: Policy, now: datetime) -> Decision:
    if release.pending_action == "rollback" or release.rollback_release_id is not None:
        return _rolling_back(release, seen, policy, now)
    version = release.production_release_version
    verdict = _verify_release(release, seen, policy.production, "Production", version, policy, now)
    if verdict.failed is not None:
        outcome = verdict.failed
        if release.previous_release_id is None:
            why = f"{outcome}; nothing to roll back to (production had no release before)"
            return _promotion_failed(release, why, {})
        return _decision(
            Update(
                "ProductionVerificationFailed",
                outcome,
                fields={
                    "reason": outcome,
                    "rollback_reason": outcome,
                    "pending_action": "rollback",
                    "pending_since": now,
                    "check_progress": verdict.progress,
                },
                detail=verdict.evidence,
            ),
            LockEnvironment(policy.production_name, outcome),
            RollBack(release.previous_release_id, release.previous_release_version, outcome),
        )
    if not verdict.passed:
        return _decision(*verdict.actions)
    return _decision(
        *verdict.updates,
        Update(
            "Released",
            f"{release.commit[:12]} runs on {release.production_app} v{version}, verified: "
            + checks_summary(verdict.progress),
            State.RELEASED,
            {"released_at": now, "check_progress": verdict.progress},
        ),
        PostStatus(PRODUCTION_STATUS, "SUCCESSFUL", f"Released on {release.production_app} v{version}"),
        NotifyChanges("production"),
    )


def _rolling_back(release: Release, seen: Observation, policy: Policy, now: datetime) -> Decision:
    """Production failed its checks: roll it back to the release it replaced, lock it, and verify
    what runs again before the release ends."""
    rollback = seen.rollback_release
    previous = f"v{release.previous_release_version}"
    cause = release.rollback_reason or release.reason  # (a release marked before the field existed)
    lock = LockEnvironment(policy.production_name, cause)
    if rollback is None:
        if _in_grace(release, seen, "rollback", policy, now):
            return _decision(
                lock,
                Wait(
                    WaitingOn.HEROKU, f"a rollback to {previous} was requested; waiting for Heroku to list it"
                ),
            )
        assert release.previous_release_id is not None
        return _decision(lock, RollBack(release.previous_release_id, release.previous_release_version, cause))
    if release.rollback_release_id != rollback.id:
        fields = {
            "rollback_release_id": rollback.id,
            "rollback_release_version": rollback.version,
            "pending_action": None,
            "pending_since": None,
            "verification_started_at": now,
            "check_progress": (),
        }
        why = f"found {release.production_app} v{rollback.version}, the rollback to {previous}"
        return _decision(lock, Update("RollbackAdopted", why, fields=fields, refs={"release": rollback.id}))
    if rollback.status == "pending":
        return _wait(WaitingOn.HEROKU, f"rollback release v{rollback.version} running its release phase")
    if rollback.status != "succeeded":
        app = release.production_app
        why = (
            f"{cause}; the rollback to {previous} failed too "
            f"(v{rollback.version} {rollback.status}). "
            f"Production runs v{release.production_release_version}: roll back by hand "
            f"(`pipeline rollback {policy.production_name} --to <version> --reason ...`, or "
            f"`heroku releases:rollback -a {app}`)"
        )
        return _promotion_failed(release, why, {"release": rollback.id})
    verdict = _verify_release(release, seen, policy.production, "Rollback", rollback.version, policy, now)
    if verdict.failed is not None:
        return _rolled_back(release, rollback, policy, now, verdict, unverified=verdict.failed)
    if not verdict.passed:
        return _decision(lock, *verdict.actions)
    return _rolled_back(release, rollback, policy, now, verdict)


def _rolled_back(
    release: Release,
    rollback: HerokuRelease,
    policy: Policy,
    now: datetime,
    verdict: Verdict,
    *,
    unverified: str | None = None,
) -> Decision:
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
    return _decision(
        *verdict.updates,
        Update(
            "RolledBack",
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


def _released(release: Release, seen: Observation, policy: Policy, now: datetime) -> Decision:
    merge: list[Action] = []
    pr = seen.pull_request
    if pr is not None and pr.state == "OPEN":
        merge.append(MergePullRequest())
    elif pr is not None and pr.state != "MERGED":
        who = pr.closed_by.username if pr.closed_by else "someone"
        merge.append(
            Update(
                "ReleaseNotMerged",
                f"release pull request #{pr.id} was {pr.state.lower()} by {who} after the promotion: "
                "production runs this release but the production branch does not have it; merge it by hand",
            )
        )
    if release.branch != policy.source_branch and "backmerge" not in release.feedback:
        merge.append(OpenBackMerge())  # a hotfix, merged into production's branch: develop needs it too
    problem = backup_problem(seen.latest_backup, policy.backup_max_age, now)
    if problem is None:
        assert seen.latest_backup is not None
        b = seen.latest_backup
        return _decision(
            *merge,
            Update(
                "BackupsVerified",
                f"newest backup {b.name} completed {b.finished_at}, {b.size_bytes} bytes",
                State.BACKUPS_VERIFIED,
                refs={"backup": b.id},
            ),
        )
    refs = {"backup": seen.latest_backup.id} if seen.latest_backup else {}
    return _decision(*merge, Update("BackupsUnverified", problem, State.BACKUPS_UNVERIFIED, refs=refs))


# --- Rollbacks asked for by people ---------------------------------------------------------------


@dataclass(frozen=True)
class RollbackSeen:
    """What a pass saw for a rollback: the new Heroku release (by id, or found by its description
    "Rollback to vN" since the write-ahead mark), then the dynos and the due checks' attempts."""

    heroku_release: HerokuRelease | None = None
    dynos: tuple[Dyno, ...] | None = None
    checks: Mapping[int, CheckResult] | None = None
    effect_refused: bool = False


@dataclass(frozen=True)
class RollbackUpdate:
    """Record an event of the rollback and change its state and fields (``silent``: fields only)."""

    kind: str
    reason: str
    to: RollbackState | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    detail: str = ""
    silent: bool = False


@dataclass(frozen=True)
class RollBackEnvironment:
    """Mark the rollback pending, then ask Heroku for a new release running the target's slug."""


@dataclass(frozen=True)
class TakeOut:
    """The rollback runs: the controller's releases it took off the environment end ``rolled_back``,
    saying who did it and why, on their commits and merged pull requests too."""


RollbackAction = RollbackUpdate | RollBackEnvironment | TakeOut | Wait


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


_STEPS = {
    State.DETECTED: _detected,
    State.GATED: _gated,
    State.STAGING_DEPLOYING: _staging_deploying,
    State.STAGING_VERIFYING: _staging_verifying,
    State.AWAITING_APPROVAL: _awaiting_approval,
    State.APPROVED: _approved,
    State.BACKING_UP: _backing_up,
    State.PROMOTING: _promoting,
    State.PRODUCTION_VERIFYING: _production_verifying,
    State.RELEASED: _released,
}


# --- Rules shared by the steps ----------------------------------------------------------------


def judge_approvals(
    release: Release,
    pr: PullRequest,
    release_branch_head: str | None,
    policy: Policy,
    now: datetime,
    activity: Sequence[PullRequestActivity] = (),
) -> tuple[Approval, ...]:
    """Every approval (and request for changes) on the release pull request, each counted or not
    with the reason and its evidence (pull request, commit, policy digest).

    An approval counts when the approver is listed in ``approval.approvers``, is not the controller's
    account, wrote no commit in the release (unless ``authors_may_approve``), no commit of the
    release has an author linked to no account (unless ``unlinked_authors`` is ``allow``), approved
    after staging was verified, after the last move of the release branch (the pull request's
    activity shows every move), while the branch points at the release's commit, and at most
    ``approval_max_age`` before ``now``. Distinct people only (Bitbucket lists each once). A request
    for changes "counts" when a listed approver made it: it rejects the release.
    """
    digest = approval_digest(policy)
    branch_moved = release_branch_head is None or not release.commit.startswith(release_branch_head[:12])
    moved = last_branch_move(activity, release.commit)
    judged: list[Approval] = []
    for p in pr.participants:
        if p.approved:
            kind = "approval"
        elif p.state == "changes_requested":
            kind = "changes_requested"
        else:
            continue
        at = p.participated_on or release.created_at
        if kind == "changes_requested":
            counted, reason = _judge_change_request(p.user, pr, activity, policy)
        else:
            why_not = _why_not_counted(release, p, at, branch_moved, release_branch_head, moved, policy, now)
            counted = why_not is None
            reason = why_not or (
                f"{p.user.username} is an approver and approved {release.commit[:12]} after staging "
                "verification, with the release branch unmoved"
            )
        judged.append(
            Approval(
                p.user,
                at,
                counted,
                reason,
                pull_request_id=pr.id,
                commit=release.commit,
                policy_digest=digest,
                kind=kind,
            )
        )
    return tuple(judged)


def _why_not_counted(
    release: Release,
    p: Participant,
    at: datetime,
    branch_moved: bool,
    release_branch_head: str | None,
    moved: tuple[datetime, str] | None,
    policy: Policy,
    now: datetime,
) -> str | None:
    """Why approval participant ``p`` does not count, or None when it does (see judge_approvals)."""
    name = p.user.username
    if policy.controller_account is not None and p.user.same_as(policy.controller_account):
        return "the controller's own account never counts"
    if not p.user.is_one_of(policy.approvers):
        return f"{name} is not an approver (approval.approvers: {policy.approvers_text})"
    if not policy.authors_may_approve:
        wrote = next(
            (
                c
                for c in release.commits
                if (c.author is not None and c.author.same_as(p.user))
                or (c.author is None and p.user.display_name and c.author_name == p.user.display_name)
            ),
            None,
        )
        if wrote is not None:
            return f"{name} wrote commit {wrote.hash[:12]} in this release; authors never approve their work"
        unlinked = next((c for c in release.commits if c.author is None), None)
        if unlinked is not None and policy.unlinked_authors == "block":
            author = unlinked.author_name or unlinked.author_raw
            return (
                f"commit {unlinked.hash[:12]} is by {author!r}, an e-mail linked to no Bitbucket "
                f"account: nobody can show {name} did not write it "
                "(link the e-mail to its account, or set approval.unlinked_authors: allow)"
            )
    if p.participated_on is None:
        return f"Bitbucket gives no time for {name}'s approval: it cannot be shown to follow verification"
    if release.staging_verified_at is None or at < release.staging_verified_at:
        return f"{name} approved at {_iso(at)}, before staging was verified"
    if branch_moved:
        where = release_branch_head[:12] if release_branch_head else "nowhere (deleted)"
        return (
            f"release branch {release.release_branch} points at {where}, not at {release.commit[:12]}: "
            "approvals are bound to the commit verified on staging"
        )
    if moved is not None and at <= moved[0]:
        return (
            f"{name} approved at {_iso(at)}, before release branch {release.release_branch} moved "
            f"(to {moved[1][:12]} at {_iso(moved[0])}): a move voids every earlier approval; approve again"
        )
    if policy.approval_max_age is not None and now - at > policy.approval_max_age:
        return (
            f"{name} approved at {_iso(at)}, more than {span_text(policy.approval_max_age)} ago "
            "(approval.max_age): unapprove and approve again"
        )
    return None


def _judge_change_request(
    user: Person, pr: PullRequest, activity: Sequence[PullRequestActivity], policy: Policy
) -> tuple[bool, str]:
    """Whether a request for changes rejects the release (a listed approver's does), and why."""
    if policy.controller_account is not None and user.same_as(policy.controller_account):
        return False, "the controller's own account never rejects"
    if not user.is_one_of(policy.approvers):
        return (
            False,
            f"{user.username} requested changes but is not an approver: it does not reject the release",
        )
    return (
        True,
        f"{user.username} requested changes on release pull request #{pr.id}: {_said(user, activity)}",
    )


def last_branch_move(activity: Sequence[PullRequestActivity], commit: str) -> tuple[datetime, str] | None:
    """When the pull request's source branch last moved, and to what, from its activity (newest
    first): an update whose source commit differs from the update before it. A pull request opened
    from anything but ``commit`` counts as moved when it was opened."""
    updates = [a for a in reversed(activity) if a.kind == "update" and a.source_commit]
    moved: tuple[datetime, str] | None = None
    previous = commit
    for update in updates:
        if not _same_commit(update.source_commit, previous):
            moved = (update.at, update.source_commit)
        previous = update.source_commit
    return moved


def _said(user: Person, activity: Sequence[PullRequestActivity]) -> str:
    """What ``user`` last wrote on the pull request (its first line), or that they wrote nothing."""
    said = next((a.text for a in activity if a.kind == "comment" and a.user and a.user.same_as(user)), "")
    line = (said.strip().splitlines() or [""])[0][:200]
    return repr(line) if line else "no comment given"


def _approval_events(release: Release, judged: tuple[Approval, ...]) -> list[Update]:
    """An event for every approval that is new or judged differently than last time, and one when
    an approval was withdrawn (unapproved in Bitbucket)."""
    before = {_approval_key(a): a for a in release.approvals}
    now_seen = {_approval_key(a) for a in judged}
    updates: list[Update] = []
    for a in judged:
        old = before.get(_approval_key(a))
        if old is not None and old.counted == a.counted and old.reason == a.reason:
            continue
        if a.kind == "changes_requested":
            kind = "ChangesRequested" if a.counted else "ChangesRequestIgnored"
        elif a.counted:
            kind = "ApprovalCounted"
        else:
            kind = "ApprovalVoided" if old is not None and old.counted else "ApprovalIgnored"
        updates.append(Update(kind, a.reason, fields={"approvals": judged}, actor=a.user.username))
    gone = [a for key, a in before.items() if key not in now_seen and a.kind == "approval"]
    for a in gone:
        why = f"{a.user.username} withdrew the approval given at {_iso(a.at)}"
        updates.append(Update("ApprovalWithdrawn", why, fields={"approvals": judged}, actor=a.user.username))
    if not updates and len(judged) != len(release.approvals):
        updates.append(Update("ApprovalsChanged", "approvals changed", fields={"approvals": judged}))
    return updates


def _approval_key(a: Approval) -> tuple[str, str, datetime]:
    return (a.kind, a.user.uuid or a.user.account_id or a.user.username, a.at)


def _approval_evidence(counted: Sequence[Approval], policy: Policy) -> str:
    """The evidence kept with ReleaseApproved: each counted approval and the policy they were judged by."""
    return json.dumps(
        {
            "approvals": [
                {
                    "approver": a.user.username,
                    "uuid": a.user.uuid,
                    "account_id": a.user.account_id,
                    "at": _iso(a.at),
                    "pull_request": a.pull_request_id,
                    "commit": a.commit,
                    "policy_digest": a.policy_digest,
                }
                for a in counted
            ],
            "policy": approval_policy(policy),
            "policy_digest": approval_digest(policy),
        },
        indent=2,
        sort_keys=True,
    )


def backup_problem(backup: Backup | None, max_age: timedelta, now: datetime) -> str | None:
    """Why the newest production backup cannot be trusted, or None when it can."""
    if backup is None:
        return "production has no backup at all"
    if backup.status != "completed":
        return f"newest backup {backup.name} is {backup.status}, not completed"
    finished = backup.finished_at or backup.created_at
    if now - finished > max_age:
        return f"newest backup {backup.name} finished {finished.isoformat()}, older than {max_age}"
    if backup.size_bytes <= 0:
        return f"newest backup {backup.name} is empty (0 bytes)"
    return None


@dataclass(frozen=True)
class Verdict:
    """What one look at a verification says: ``passed``; ``failed`` (why, with the failing
    attempt's ``evidence``); or neither, going on (``wait`` says what for). ``updates`` record the
    attempts made (each carries the new ``progress``)."""

    passed: bool = False
    failed: str | None = None
    evidence: str = ""
    progress: tuple[CheckProgress, ...] = ()
    updates: tuple[Update, ...] = ()
    wait: Wait | None = None

    @property
    def actions(self) -> tuple[Action, ...]:
        return (*self.updates, self.wait) if self.wait is not None else self.updates


def verify(
    rules: Sequence[CheckRule],
    progress: Sequence[CheckProgress],
    results: Mapping[int, CheckResult] | None,
    dynos: Sequence[Dyno] | None,
    *,
    stage: str,
    version: int | None,
    started: datetime | None,
    now: datetime,
    dyno_start_timeout: timedelta,
) -> Verdict:
    """Judge one look at a verification (a stage after a deploy, production after a rollback).

    Checks count only once every dyno runs ``version`` (Heroku restarts dynos after a release
    succeeds; a check that reached an old one would prove nothing); a dyno that crashed on it, or
    dynos not up within ``dyno_start_timeout`` of ``started``, fail at once. Then each check in
    ``results`` (the attempts made now) moves its progress: a pass starts (or continues) its soak
    and it is done once it has passed for ``soak``; a failure during the soak fails; any other
    failure is tried again after the rule's wait, ``retries`` times. All done: passed."""
    if dynos is not None:
        problem, crashed = dyno_problem(tuple(dynos), version)
        if problem is not None:
            if crashed:
                return Verdict(failed=f"{stage}: {problem}")
            if now - (started or now) > dyno_start_timeout:
                return Verdict(failed=f"{stage}: {problem} after {span_text(dyno_start_timeout)}")
            return Verdict(wait=Wait(WaitingOn.HEROKU, f"{stage}: {problem}"))
    current = list(progress) if len(progress) == len(rules) else [CheckProgress(r.name) for r in rules]
    attempts: list[tuple[str, str, str]] = []  # kind, reason, evidence
    for index, result in sorted((results or {}).items()):
        rule, before = rules[index], current[index]
        if result.passed:
            since = before.passing_since or now
            soaked = now - since >= rule.soak
            current[index] = CheckProgress(
                rule.name, 0, since, None if soaked else now + rule.interval, soaked, result.detail
            )
            if before.passing_since is None and (not soaked or result.evidence):
                # Worth an event of its own: a soak starts, or there is evidence to keep.
                hold = f"; holding it until {_iso(since + rule.soak)}" if not soaked else ""
                attempts.append(
                    (f"{stage}CheckPassed", f"{rule.name}: {result.detail}{hold}", result.evidence)
                )
            continue
        if before.passing_since is not None:
            held = span_text(now - before.passing_since)
            soak = span_text(rule.soak)
            why = f"{stage} check {rule.name} failed {held} into its {soak} soak: {result.detail}"
            return Verdict(failed=why, evidence=result.evidence, progress=tuple(current))
        failures = before.failures + 1
        if failures > rule.retries:
            why = f"{stage} check {rule.name} did not pass in {failures} attempt(s): {result.detail}"
            return Verdict(failed=why, evidence=result.evidence, progress=tuple(current))
        wait = rule.wait_after(failures)
        current[index] = CheckProgress(rule.name, failures, None, now + wait, False, result.detail)
        reason = (
            f"{rule.name}: attempt {failures} of {rule.retries + 1}: {result.detail}; "
            f"trying again in {span_text(wait)}"
        )
        attempts.append((f"{stage}CheckFailed", reason, result.evidence))
    done = tuple(current)
    updates = tuple(
        Update(kind, reason, fields={"check_progress": done}, detail=evidence)
        for kind, reason, evidence in attempts
    )
    if all(p.done for p in done):
        return Verdict(passed=True, progress=done, updates=updates)
    if not updates and done != tuple(progress):  # a soak goes on, or the first look: keep the progress
        updates = (Update("CheckProgress", "", fields={"check_progress": done}, silent=True),)
    due = min((p.next_at for p in done if not p.done and p.next_at is not None), default=None)
    return Verdict(
        progress=done, updates=updates, wait=Wait(WaitingOn.RETRY, _progress_text(stage, done), due)
    )


def _verify_release(
    release: Release,
    seen: Observation,
    rules: Verification,
    stage: str,
    version: int | None,
    policy: Policy,
    now: datetime,
) -> Verdict:
    return verify(
        rules.checks,
        release.check_progress,
        seen.checks,
        seen.dynos,
        stage=stage,
        version=version,
        started=release.verification_started_at,
        now=now,
        dyno_start_timeout=policy.dyno_start_timeout,
    )


def _progress_text(stage: str, progress: Sequence[CheckProgress]) -> str:
    """Where the checks stand, in words that do not change from one pass to the next."""
    parts = []
    for p in progress:
        if p.done:
            parts.append(f"{p.name} passed")
        elif p.passing_since is not None:
            parts.append(f"{p.name} passing, holding until {_iso(p.next_at) if p.next_at else 'now'}")
        elif p.failures:
            parts.append(
                f"{p.name} failed {p.failures} time(s), next try {_iso(p.next_at) if p.next_at else 'now'}"
            )
        else:
            parts.append(f"{p.name} not tried yet")
    return f"{stage} checks: " + ("; ".join(parts) or "none")


def checks_summary(progress: Sequence[CheckProgress]) -> str:
    """The checks' last word each, once they passed."""
    if not progress:
        return "no checks configured"
    return "; ".join(f"{p.name}: {p.detail}" for p in progress)


def dyno_problem(dynos: tuple[Dyno, ...], version: int | None) -> tuple[str | None, bool]:
    """Why the dynos do not (yet) run release ``version``, and whether one of them crashed on it."""
    crashed = [d.name for d in dynos if d.state == "crashed" and d.release_version == version]
    if crashed:
        return f"{', '.join(crashed)} crashed running v{version}", True
    behind = [d for d in dynos if d.state != "up" or d.release_version != version]
    if behind:
        listed = ", ".join(f"{d.name} {d.state} on v{d.release_version}" for d in behind)
        return f"waiting for the dynos to run v{version} ({listed})", False
    return None, False


def _in_grace(release: Release, seen: Observation, action: str, policy: Policy, now: datetime) -> bool:
    """True while an effect marked pending may still show up on the platform: the mark was left by
    a pass that died before the answer came (an answered refusal is not worth waiting for)."""
    return (
        release.pending_action == action
        and not seen.effect_refused
        and release.pending_since is not None
        and now - release.pending_since < policy.intent_grace
    )


def _closed(
    release: Release, pr: PullRequest, activity: Sequence[PullRequestActivity], policy: Policy
) -> Decision | None:
    """A person ended the release, saying who and why: an approver requested changes, or the pull
    request was declined (or merged) outside the controller."""
    if (
        pr.state == "DECLINED"
        and pr.closed_by is not None
        and pr.closed_by.same_as(policy.controller_account)
    ):
        return None  # the controller declined it (superseded, rolled back): its own reason follows
    decline: list[Action] = []
    if pr.state == "OPEN":
        requested = next(
            (
                p
                for p in pr.participants
                if p.state == "changes_requested"
                and p.user.is_one_of(policy.approvers)
                and not p.user.same_as(policy.controller_account)
            ),
            None,
        )
        if requested is None:
            return None
        who = requested.user.username
        why = f"{who} requested changes on release pull request #{pr.id}: {_said(requested.user, activity)}"
        decline.append(
            DeclinePullRequest(
                f"Rejected: {why}. This release will not go to production; the next merge into "
                f"{release.branch} brings a new candidate."
            )
        )
    else:
        who = pr.closed_by.username if pr.closed_by else "someone"
        said = pr.reason.strip() or next(
            (a.text.strip() for a in activity if a.kind == "update" and a.state == pr.state and a.text), ""
        )
        because = f": {said[:200]!r}" if said else " (no reason given)"
        outside = " outside the controller" if pr.state == "MERGED" else ""
        why = f"release pull request #{pr.id} was {pr.state.lower()} by {who}{outside}{because}"
        if pr.state == "MERGED":
            why += "; production was not changed"
    return _decision(
        Update("ReleaseRejected", why, State.REJECTED, actor=who, refs={"pull_request": str(pr.id)}),
        PostStatus(PRODUCTION_STATUS, "STOPPED", why[:140], release.pull_request_url),
        *decline,
    )


def _missing_text(missing: tuple[Commit, ...], policy: Policy) -> str:
    """ "commit abc (Fix login) that production has; merge main into ..." for the commits missing."""
    first = missing[0]
    what = f"commit {first.hash[:12]} ({(first.message.splitlines() or [''])[0][:60]})"
    more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    return (
        f"{what}{more} that production's branch {policy.production_branch} has: promoting it would take "
        f"them out of production; merge {policy.production_branch} into it (a hotfix must come back)"
    )


def _locked(stage: str, environment: EnvironmentState | None) -> Wait | None:
    """Why nothing may deploy to a locked stage, or None."""
    if environment is None or environment.locked_at is None:
        return None
    return Wait(
        WaitingOn.PERSON,
        f"{stage} is locked since {_iso(environment.locked_at)} by {environment.locked_by}: "
        f"{environment.lock_reason}; `pipeline unlock {stage} --reason ...` clears it",
    )


def _closed_to(
    release: Release,
    stage: str,
    environment: EnvironmentState | None,
    windows: DeployWindows | None,
    now: datetime,
) -> tuple[Wait | None, str]:
    """(Why a deployment may not start now: a freeze or a closed window, or None; and what to add
    to the start's reason when a person overrode both for this release)."""
    if environment is not None and environment.override_release == release.id and release.id is not None:
        by = environment.override_by
        return (
            None,
            f"; window and freeze overridden by {by} (`pipeline promote {stage} --now`): "
            f"{environment.override_reason}",
        )
    if environment is not None and environment.frozen(now):
        until = f" until {_iso(environment.frozen_until)}" if environment.frozen_until else ""
        why = (
            f"{stage} is frozen{until} since {_iso(environment.frozen_at or now)} "
            f"by {environment.frozen_by}: "
            f"{environment.freeze_reason}; `pipeline unfreeze {stage}` lifts it, "
            f"`pipeline promote {stage} --now --reason ...` starts this one anyway"
        )
        return Wait(WaitingOn.WINDOW, why, environment.frozen_until), ""
    if windows is not None:
        is_open, opens = window_state(windows, now)
        if not is_open:
            when = (
                f"opens {opens.astimezone(windows.timezone):%a %Y-%m-%d %H:%M} {windows.zone_name} "
                f"({_iso(opens)})"
                if opens is not None
                else "never opens (no day in its windows)"
            )
            why = (
                f"waiting for the {stage} deploy window: {when}; "
                f"`pipeline promote {stage} --now --reason ...` starts it now"
            )
            return Wait(WaitingOn.WINDOW, why, opens), ""
    return None, ""


def window_state(windows: DeployWindows, now: datetime) -> tuple[bool, datetime | None]:
    """Whether a deployment may start at ``now``, and when the next window opens (None if never)."""
    local = now.astimezone(windows.timezone)
    opens: datetime | None = None
    for offset in range(-1, 8):
        day = (local + timedelta(days=offset)).date()
        for window in windows.allow:
            if day.weekday() not in window.days:
                continue
            start = datetime.combine(day, window.start, tzinfo=windows.timezone)
            end = (
                datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=windows.timezone)
                if window.end == datetime.min.time()
                else datetime.combine(day, window.end, tzinfo=windows.timezone)
            )
            if start <= local < end:
                return True, None
            if start > local and (opens is None or start < opens):
                opens = start
    return False, opens.astimezone(now.tzinfo) if opens is not None else None


def _supersede(release: Release, newer: Release) -> Decision:
    link = f" ({newer.pull_request_url})" if newer.pull_request_url else ""
    why = f"superseded by release {newer.id} of {newer.commit[:12]}{link}"
    actions: list[Action] = [
        Update(
            "ReleaseSuperseded",
            why,
            State.SUPERSEDED,
            {"superseded_by": newer.id},
            {"release": str(newer.id)},
        )
    ]
    if release.pull_request_id is not None:
        actions.append(DeclinePullRequest(f"Superseded by release {newer.id} of {newer.commit[:12]}{link}."))
    return _decision(*actions)


def _staging_failed(
    release: Release,
    kind: str,
    why: str,
    fields: Mapping[str, Any],
    refs: Mapping[str, str],
    *,
    detail: str = "",
) -> Decision:
    return _decision(
        Update(kind, why, State.STAGING_FAILED, fields, refs, detail=detail),
        PostStatus(STAGING_STATUS, "FAILED", why[:140]),
    )


def _promotion_failed(
    release: Release, why: str, refs: Mapping[str, str], fields: Mapping[str, Any] | None = None
) -> Decision:
    return _decision(
        Update("PromotionFailed", why, State.PROMOTION_FAILED, dict(fields or {}), refs),
        PostStatus(PRODUCTION_STATUS, "FAILED", why[:140]),
    )


def _same_commit(a: str, b: str) -> bool:
    return bool(a) and bool(b) and (a.startswith(b) or b.startswith(a))


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def span_text(span: timedelta) -> str:
    """72h -> "72h", 90 minutes -> "90m", 45 s -> "45s" (for messages)."""
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0 and not (unit == "d" and seconds < 4 * 86400):
            return f"{seconds // size}{unit}"
    return f"{span.total_seconds():g}s"


def _failed_target(promotion: Promotion | None) -> str | None:
    if promotion is None:
        return None
    for t in promotion.targets:
        if t.status == "failed":
            return f"promotion {promotion.id} failed: {t.error_message or 'no message'}"
    return None
