"""What a pass saw for one release, and whether an effect marked pending may still show up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pipeline.domain.policy import Policy
from pipeline.model import (
    Backup,
    CheckResult,
    Commit,
    Dyno,
    EnvironmentState,
    HerokuBuild,
    HerokuRelease,
    Intent,
    Merge,
    Promotion,
    PullRequest,
    PullRequestActivity,
    Release,
)


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
    # Where the release pull request's merge task stands (read when one is recorded).
    merge: Merge | None = None
    # The effect marked pending was refused (an HTTP error answer) in this process: it did not
    # happen, or what did is already visible; no reason to wait out ``Policy.intent_grace``.
    effect_refused: bool = False


def in_grace(release: Release, seen: Observation, action: Intent, policy: Policy, now: datetime) -> bool:
    """True while an effect marked pending may still show up on the platform: the mark was left by
    a pass that died before the answer came (an answered refusal is not worth waiting for)."""
    return (
        release.pending_action == action
        and not seen.effect_refused
        and release.pending_since is not None
        and now - release.pending_since < policy.intent_grace
    )
