"""A release: where it is (``State``), what the controller keeps about it (``Release``), its
approvals and the progress of its checks."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import TypedDict

from pipeline.model.source import Change, Commit, Person


class State(StrEnum):
    """Where a release is. The path: detected -> ... -> backups_verified; the rest are ends."""

    DETECTED = "detected"
    GATED = "gated"
    STAGING_DEPLOYING = "staging_deploying"
    STAGING_VERIFYING = "staging_verifying"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    BACKING_UP = "backing_up"
    PROMOTING = "promoting"
    PRODUCTION_VERIFYING = "production_verifying"
    RELEASED = "released"
    BACKUPS_VERIFIED = "backups_verified"
    # Ends.
    GATE_FAILED = "gate_failed"
    STAGING_FAILED = "staging_failed"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"
    PROMOTION_FAILED = "promotion_failed"
    ROLLED_BACK = "rolled_back"
    BACKUPS_UNVERIFIED = "backups_unverified"
    ABORTED = "aborted"  # a person ended it before it was promoted (`pipeline abort`)

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @property
    def in_staging(self) -> bool:
        """The release is using the staging app (deploying or verifying there)."""
        return self in (State.STAGING_DEPLOYING, State.STAGING_VERIFYING)

    @property
    def in_production(self) -> bool:
        """The release holds production (its backup, promotion, verification): no other release
        starts there meanwhile."""
        return self in (State.BACKING_UP, State.PROMOTING, State.PRODUCTION_VERIFYING)

    @property
    def changing_production(self) -> bool:
        """The release is changing what production runs (a backup changes nothing there): a
        person's rollback waits only for these."""
        return self in (State.PROMOTING, State.PRODUCTION_VERIFYING)

    @property
    def may_be_aborted(self) -> bool:
        """Nothing of it has reached production yet: a person may end it (``pipeline abort``)."""
        return not self.is_final and not self.changing_production and self != State.RELEASED


FINAL_STATES = frozenset(
    {
        State.BACKUPS_VERIFIED,
        State.BACKUPS_UNVERIFIED,
        State.GATE_FAILED,
        State.STAGING_FAILED,
        State.REJECTED,
        State.SUPERSEDED,
        State.PROMOTION_FAILED,
        State.ROLLED_BACK,
        State.ABORTED,
    }
)


class Intent(StrEnum):
    """An effect marked pending (write-ahead) before it is asked for, until its id is known."""

    DEPLOY = "deploy"  # a staging build
    BACKUP = "backup"  # a production database backup
    PROMOTE = "promote"  # a pipeline promotion to production
    ROLLBACK = "rollback"  # production rolled back after its verification failed
    MERGE = "merge"  # the release pull request merged into the production branch


@dataclass(frozen=True)
class CheckProgress:
    """Where one check of a verification stands: attempts in a row that did not pass, since when it
    has passed without a break (its soak), when it is tried next, whether it is done (passed and
    soaked), and what its last attempt said."""

    name: str
    failures: int = 0
    passing_since: datetime | None = None
    next_at: datetime | None = None
    done: bool = False
    detail: str = ""


@dataclass(frozen=True)
class Approval:
    """One approval (or request for changes) seen on a release pull request, and the judgement on
    it, with its evidence: which pull request and commit it was given on, and the digest of the
    approval policy it was judged under (``pipeline.domain.approval_policy``)."""

    user: Person
    at: datetime
    counted: bool
    reason: str
    pull_request_id: int | None = None
    commit: str = ""
    policy_digest: str = ""
    kind: str = "approval"  # approval | changes_requested


@dataclass(frozen=True)
class Release:
    """One candidate commit of the watched branch on its way to production.

    Every id of an external effect is recorded here before the controller waits on it, so a pass
    that starts after a crash finds it and carries on rather than doing it again. ``pending_action``
    and ``pending_since`` are the write-ahead mark of an effect whose id is not known yet.
    """

    pipeline: str
    commit: str
    branch: str
    state: State
    created_at: datetime
    updated_at: datetime
    id: int | None = None
    # What is in it: commits since the production branch (at ``base_commit`` when detected), and the
    # pull requests that merged them.
    commits: tuple[Commit, ...] = ()
    changes: tuple[Change, ...] = ()
    base_commit: str | None = None
    # Staging.
    staging_app: str = ""
    staging_build_id: str | None = None
    staging_release_id: str | None = None
    staging_release_version: int | None = None
    staging_slug_id: str | None = None
    staging_verified_at: datetime | None = None
    # Approval.
    release_branch: str | None = None
    pull_request_id: int | None = None
    pull_request_url: str | None = None
    approvals: tuple[Approval, ...] = ()
    approved_at: datetime | None = None
    # Production.
    production_app: str = ""
    backup_id: str | None = None
    backup_name: str | None = None
    promotion_id: str | None = None
    previous_release_id: str | None = None
    previous_release_version: int | None = None
    production_release_id: str | None = None
    production_release_version: int | None = None
    rollback_release_id: str | None = None
    rollback_release_version: int | None = None
    released_at: datetime | None = None
    # After a failed production verification: why production was rolled back, and whether the
    # release it went back to passed its checks.
    rollback_reason: str = ""
    rollback_verified_at: datetime | None = None
    # Verification progress of what is being verified (reset when verification starts): the stage's
    # checks, each with its own attempts and soak.
    verification_started_at: datetime | None = None
    check_progress: tuple[CheckProgress, ...] = ()
    # Write-ahead mark of an effect in flight, and the last word on why the release is where it is.
    pending_action: Intent | None = None
    pending_since: datetime | None = None
    reason: str = ""
    superseded_by: int | None = None
    # Feedback in Bitbucket: keys of what was posted ("staging:#12" a comment on pull request 12;
    # a key ending in "?" is about to be posted), and the digest of the release pull request's
    # description as last written.
    feedback: tuple[str, ...] = ()
    description_digest: str | None = None
    # A merge of the release pull request that Bitbucket runs as a task: the URL to poll.
    merge_task: str | None = None
    # The number of the newest backup there was when this release asked for its own: only a later
    # one can be the answer to a capture whose answer was lost.
    backup_floor: int | None = None

    def changed(self, changes: ReleaseChanges) -> Release:
        """This release with ``changes`` applied (a new value: releases are frozen)."""
        return replace(self, **changes)

    @property
    def counted_approvals(self) -> tuple[Approval, ...]:
        """The approvals that counted (not requests for changes)."""
        return tuple(a for a in self.approvals if a.counted and a.kind == "approval")


class ReleaseChanges(TypedDict, total=False):
    """A typed change of a release's fields (what ``Update.fields`` carries): a key that is not a
    field of ``Release``, or a value of the wrong type, is an error mypy reports. The state moves
    through ``Update.to``; identity (pipeline, commit, branch, id, created_at) never changes."""

    commits: tuple[Commit, ...]
    changes: tuple[Change, ...]
    base_commit: str | None
    staging_app: str
    staging_build_id: str | None
    staging_release_id: str | None
    staging_release_version: int | None
    staging_slug_id: str | None
    staging_verified_at: datetime | None
    release_branch: str | None
    pull_request_id: int | None
    pull_request_url: str | None
    approvals: tuple[Approval, ...]
    approved_at: datetime | None
    production_app: str
    backup_id: str | None
    backup_name: str | None
    promotion_id: str | None
    previous_release_id: str | None
    previous_release_version: int | None
    production_release_id: str | None
    production_release_version: int | None
    rollback_release_id: str | None
    rollback_release_version: int | None
    released_at: datetime | None
    rollback_reason: str
    rollback_verified_at: datetime | None
    verification_started_at: datetime | None
    check_progress: tuple[CheckProgress, ...]
    pending_action: Intent | None
    pending_since: datetime | None
    reason: str
    superseded_by: int | None
    feedback: tuple[str, ...]
    description_digest: str | None
    merge_task: str | None
    backup_floor: int | None
