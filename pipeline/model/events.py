"""The append-only history: one ``Event`` per transition or decision, of a kind ``EventKind`` names."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from pipeline.model.release import State


class EventKind(StrEnum):
    """Every kind of event the history holds, in the past tense. The values are what the store
    keeps and what ``pipeline log`` shows; never rename one (old histories hold it)."""

    # A release is found, and its gate.
    ReleaseDetected = "ReleaseDetected"
    HotfixStarted = "HotfixStarted"
    GatePassed = "GatePassed"
    GateFailed = "GateFailed"
    ReleaseSuperseded = "ReleaseSuperseded"
    # Staging.
    StagingDeployStarted = "StagingDeployStarted"
    StagingBuildRequested = "StagingBuildRequested"
    StagingBuildStarted = "StagingBuildStarted"
    StagingBuildAdopted = "StagingBuildAdopted"
    StagingBuildFailed = "StagingBuildFailed"
    StagingReleased = "StagingReleased"
    StagingReleaseFailed = "StagingReleaseFailed"
    StagingCheckPassed = "StagingCheckPassed"
    StagingCheckFailed = "StagingCheckFailed"
    StagingVerified = "StagingVerified"
    StagingVerificationFailed = "StagingVerificationFailed"
    # Approval.
    ReleasePullRequestOpened = "ReleasePullRequestOpened"
    ReleasePullRequestFailed = "ReleasePullRequestFailed"
    ApprovalRequested = "ApprovalRequested"
    ApprovalCounted = "ApprovalCounted"
    ApprovalIgnored = "ApprovalIgnored"
    ApprovalVoided = "ApprovalVoided"
    ApprovalWithdrawn = "ApprovalWithdrawn"
    ApprovalsChanged = "ApprovalsChanged"
    ChangesRequested = "ChangesRequested"
    ChangesRequestIgnored = "ChangesRequestIgnored"
    ReleaseApproved = "ReleaseApproved"
    ApprovalLost = "ApprovalLost"
    ReleaseRejected = "ReleaseRejected"
    ReleaseAborted = "ReleaseAborted"
    ReleasePullRequestDeclined = "ReleasePullRequestDeclined"
    ReleasePullRequestNotDeclined = "ReleasePullRequestNotDeclined"
    # Production: the backup, the promotion, verification.
    BackupStarted = "BackupStarted"
    BackupRequested = "BackupRequested"
    BackupCaptureStarted = "BackupCaptureStarted"
    BackupAdopted = "BackupAdopted"
    BackupCaptured = "BackupCaptured"
    BackupFailed = "BackupFailed"
    BackupTimedOut = "BackupTimedOut"
    PromotionPostponed = "PromotionPostponed"
    PromotionRequested = "PromotionRequested"
    PromotionStarted = "PromotionStarted"
    PromotionFailed = "PromotionFailed"
    ProductionReleaseStarted = "ProductionReleaseStarted"
    ProductionReleased = "ProductionReleased"
    ProductionCheckPassed = "ProductionCheckPassed"
    ProductionCheckFailed = "ProductionCheckFailed"
    ProductionVerificationFailed = "ProductionVerificationFailed"
    Released = "Released"
    # Production rolled back by the controller after its verification failed.
    RollbackRequested = "RollbackRequested"
    RollbackStarted = "RollbackStarted"
    RollbackAdopted = "RollbackAdopted"
    RollbackCheckPassed = "RollbackCheckPassed"
    RollbackCheckFailed = "RollbackCheckFailed"
    RollbackFailed = "RollbackFailed"
    RolledBack = "RolledBack"
    # After the release: the merge, a hotfix brought back, the backups.
    ReleaseMergeRequested = "ReleaseMergeRequested"
    ReleaseMergeStarted = "ReleaseMergeStarted"
    ReleasePullRequestMerged = "ReleasePullRequestMerged"
    ReleaseMergeFailed = "ReleaseMergeFailed"
    ReleaseNotMerged = "ReleaseNotMerged"
    BackMergeRequested = "BackMergeRequested"
    BackupsVerified = "BackupsVerified"
    BackupsUnverified = "BackupsUnverified"
    # Rollbacks people ask for (their RollbackRequested and RollbackStarted are the kinds above).
    HerokuRollbackRequested = "HerokuRollbackRequested"
    RollbackReleased = "RollbackReleased"
    RollbackVerified = "RollbackVerified"
    RollbackUnverified = "RollbackUnverified"
    RolledBackByHand = "RolledBackByHand"
    # Environments: what people decided about a stage.
    EnvironmentLocked = "EnvironmentLocked"
    EnvironmentUnlocked = "EnvironmentUnlocked"
    EnvironmentFrozen = "EnvironmentFrozen"
    EnvironmentFreezeChanged = "EnvironmentFreezeChanged"
    EnvironmentUnfrozen = "EnvironmentUnfrozen"
    OverrideGranted = "OverrideGranted"
    OverrideUsed = "OverrideUsed"
    # Operations.
    BackupRestoreVerified = "BackupRestoreVerified"
    BackupRestoreFailed = "BackupRestoreFailed"
    CredentialsRotated = "CredentialsRotated"
    # Never recorded: the progress of checks saved without an event (a soak that goes on).
    CheckProgress = "CheckProgress"

    @classmethod
    def _missing_(cls, value: object) -> EventKind | None:
        """A kind this version does not know (a history written by another version) is kept as it
        is, so the history reads whole; code can only name the kinds above."""
        if not isinstance(value, str) or not value:
            return None
        unknown = str.__new__(cls, value)
        unknown._name_ = value
        unknown._value_ = value
        return unknown


@dataclass(frozen=True)
class Event:
    """One entry of the append-only history: a transition or a decision, with its evidence.

    ``kind`` is past tense (ReleaseDetected, StagingVerified, ApprovalIgnored...); ``refs`` holds
    the ids of what it touched (build, release, pull_request, backup, promotion, rollback...).
    An event of an environment (frozen, unlocked, rolled back by hand) has ``environment`` set, and
    ``release_id`` only when it concerns one release too.
    """

    release_id: int | None
    at: datetime
    kind: EventKind
    actor: str
    reason: str
    state_from: State | None = None
    state_to: State | None = None
    refs: dict[str, str] = field(default_factory=dict)
    id: int | None = None
    detail: str = ""  # longer evidence: a release phase's output, the policy an approval was judged by
    environment: str | None = None
    pipeline: str = ""  # filled in by the store for a release's events
