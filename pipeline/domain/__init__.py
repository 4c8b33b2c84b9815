"""The release controller's decisions, pure: no I/O, no clock, no environment.

``decide(release, observation, policy, now)`` says what to do next for a release, and
``decide_rollback`` for a rollback a person asked for. The modules, in the order a release meets them:

- ``actions``: what a decision may ask for (``Update``, effects, feedback, ``Wait``) and ``Decision``;
- ``policy``: the rules of one pipeline (``Policy``, ``CheckRule``) and the approval policy's digest;
- ``observation``: what a pass saw for a release;
- ``gates``: locks, freezes, deploy windows, commits production has that a release lacks;
- ``verification``: checks with retries, backoff and soak; dynos; backup trust;
- ``approval``: judging approvals;
- ``ends``: superseded, rejected, staging failed, promotion failed;
- ``staging`` and ``production``: the steps of the path;
- ``release``: ``decide`` and its state table;
- ``rollback``: ``decide_rollback``.

This package imports nothing of ours but ``pipeline.model``.
"""

from pipeline.domain.actions import (
    CONTROLLER,
    PRODUCTION_STATUS,
    STAGING_STATUS,
    Action,
    CaptureBackup,
    Decision,
    DeclinePullRequest,
    DeployToStaging,
    LockEnvironment,
    MergePullRequest,
    NotifyChanges,
    OpenBackMerge,
    OpenReleasePullRequest,
    PostStatus,
    Promote,
    ReleaseDecision,
    ReleaseUpdate,
    RollBack,
    RollbackAction,
    RollbackDecision,
    RollBackEnvironment,
    RollbackUpdate,
    TakeOut,
    Update,
    Wait,
    WaitingOn,
)
from pipeline.domain.approval import judge_approvals, last_branch_move
from pipeline.domain.backups import backup_problem
from pipeline.domain.gates import window_state
from pipeline.domain.observation import Observation
from pipeline.domain.policy import (
    MAX_CHECK_WAIT,
    ApprovalPolicy,
    CheckRule,
    Policy,
    Verification,
    approval_digest,
    approval_policy,
    is_account_ident,
    pin_approvers,
    reviewers_of,
)
from pipeline.domain.release import decide
from pipeline.domain.rollback import RollbackObservation, decide_rollback
from pipeline.domain.text import span_text
from pipeline.domain.verification import Verifying, checks_summary, dyno_problem, verify
from pipeline.model import Approval

__all__ = [
    "CONTROLLER",
    "MAX_CHECK_WAIT",
    "PRODUCTION_STATUS",
    "STAGING_STATUS",
    "Action",
    "Approval",
    "ApprovalPolicy",
    "CaptureBackup",
    "CheckRule",
    "Decision",
    "DeclinePullRequest",
    "DeployToStaging",
    "LockEnvironment",
    "MergePullRequest",
    "NotifyChanges",
    "Observation",
    "OpenBackMerge",
    "OpenReleasePullRequest",
    "Policy",
    "PostStatus",
    "Promote",
    "ReleaseDecision",
    "ReleaseUpdate",
    "RollBack",
    "RollBackEnvironment",
    "RollbackAction",
    "RollbackDecision",
    "RollbackObservation",
    "RollbackUpdate",
    "TakeOut",
    "Update",
    "Verification",
    "Verifying",
    "Wait",
    "WaitingOn",
    "approval_digest",
    "approval_policy",
    "backup_problem",
    "checks_summary",
    "decide",
    "decide_rollback",
    "dyno_problem",
    "is_account_ident",
    "judge_approvals",
    "last_branch_move",
    "pin_approvers",
    "reviewers_of",
    "span_text",
    "verify",
    "window_state",
]
