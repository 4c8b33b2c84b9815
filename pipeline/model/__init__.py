"""The release controller's words, as plain frozen values: no I/O, no clock, no environment.

``Release`` and ``Event`` are what the store keeps; the other values are what adapters report from
Bitbucket and Heroku (``Commit``, ``PullRequest``, ``HerokuBuild``, ``Backup``...), in our words,
so the decision code never sees a third-party object. ``pipeline.domain`` decides with them.

- ``source``: what Bitbucket reports (accounts, commits, pull requests, activity, webhooks);
- ``platform``: what Heroku reports (builds, releases, dynos, promotions, backups) and check results;
- ``release``: a release, its state, approvals and check progress;
- ``rollback``: a rollback a person asked for;
- ``environment``: locks, freezes, overrides and deploy windows of a stage;
- ``events``: the history;
- ``access``: what a credential may do.

Times are timezone-aware UTC ``datetime`` values everywhere.
"""

from pipeline.model.access import PermissionCheck
from pipeline.model.environment import DeployWindows, EnvironmentState, Window
from pipeline.model.events import Event, EventKind
from pipeline.model.platform import (
    Backup,
    BackupSchedule,
    CheckResult,
    DatabaseInfo,
    Dyno,
    Formation,
    HerokuBuild,
    HerokuRelease,
    Promotion,
    PromotionTarget,
)
from pipeline.model.release import (
    FINAL_STATES,
    Approval,
    CheckProgress,
    Intent,
    Release,
    ReleaseChanges,
    State,
)
from pipeline.model.rollback import Rollback, RollbackChanges, RollbackState, TakenOut
from pipeline.model.source import (
    Change,
    Comment,
    Commit,
    Merge,
    Participant,
    Person,
    PullRequest,
    PullRequestActivity,
    Webhook,
)

__all__ = [
    "FINAL_STATES",
    "Approval",
    "Backup",
    "BackupSchedule",
    "Change",
    "CheckProgress",
    "CheckResult",
    "Comment",
    "Commit",
    "DatabaseInfo",
    "DeployWindows",
    "Dyno",
    "EnvironmentState",
    "Event",
    "EventKind",
    "Formation",
    "HerokuBuild",
    "HerokuRelease",
    "Intent",
    "Merge",
    "Participant",
    "PermissionCheck",
    "Person",
    "Promotion",
    "PromotionTarget",
    "PullRequest",
    "PullRequestActivity",
    "Release",
    "ReleaseChanges",
    "Rollback",
    "RollbackChanges",
    "RollbackState",
    "State",
    "TakenOut",
    "Webhook",
    "Window",
]
