"""What a pass reads for a release, by its state: only what the state's step needs (the Bitbucket
budget is 1,000 requests an hour), built into an ``Observation`` by keyword.

After a crash, an effect marked pending but never recorded is looked for by its natural key: the
build labelled with the release's commit, a backup or a production release created since the mark
(less ``CLOCK_SKEW``: Heroku's clock may be behind ours).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.config import Settings
from pipeline.controller.checking import Checker, StageLook
from pipeline.controller.stage import StageGuard
from pipeline.domain import Observation
from pipeline.model import (
    Backup,
    Commit,
    HerokuBuild,
    HerokuRelease,
    Intent,
    Promotion,
    PullRequest,
    PullRequestActivity,
    Release,
    State,
)
from pipeline.ports import Backups, Platform, ReleaseStore, SourceControl

# How far Heroku's clock may be behind ours when we look for an effect by the time we asked for it.
CLOCK_SKEW = timedelta(seconds=30)
# While a backup runs, its release's pull request is read at most this often (unless told to look).
APPROVAL_LOOK_EVERY = 10.0


@dataclass(frozen=True)
class ApprovalLook:
    """The release pull request as Bitbucket shows it now: the pull request with its participants,
    where the release branch points, and its activity (newest first)."""

    pull_request: PullRequest | None = None
    branch_head: str | None = None
    activity: tuple[PullRequestActivity, ...] = ()


class ReleaseObserver:
    def __init__(
        self,
        settings: Settings,
        source: SourceControl,
        platform: Platform,
        backups: Backups,
        store: ReleaseStore,
        guard: StageGuard,
        checker: Checker,
        refused: Callable[[Release], bool],
    ) -> None:
        self.settings = settings
        self.source = source
        self.platform = platform
        self.backups = backups
        self.store = store
        self.guard = guard
        self.checker = checker
        self.refused = refused
        self._approval_looked: dict[int, float] = {}  # release id -> time.monotonic() of the last read

    def observe(self, release: Release, now: datetime, *, look_now: bool = False) -> Observation:
        """Read what the release's state needs, and nothing else (``look_now``: a webhook said
        something changed: read what is read only now and then too)."""
        state = release.state
        others = [r for r in self.store.active(self.settings.name) if r.id != release.id]
        # Only a newer release that contains this one may take its place (a hotfix and develop
        # are different lines: neither supersedes the other).
        newer = [r for r in others if (r.id or 0) > (release.id or 0) and contains(r, release)]
        refused = self.refused(release)
        staging, production = self.settings.staging, self.settings.production
        if state == State.DETECTED:
            statuses = self.source.build_statuses(release.commit)
            green = all(statuses.get(k) == "SUCCESSFUL" for k in self.settings.source.required_builds)
            return Observation(
                # Only a newer candidate that passed its gate takes this one's place.
                newer=next((r for r in newer if r.state != State.DETECTED), None),
                build_statuses=statuses,
                # About to pass the gate: would it take something out of production?
                production_missing=self._production_missing(release) if green else None,
                effect_refused=refused,
            )
        if state == State.GATED:
            return Observation(
                newer=next((r for r in newer if r.state != State.DETECTED), None),
                staging_busy_with=self.guard.busy_with(staging.name, others),
                environment=self.store.environment(self.settings.name, staging.name),
                effect_refused=refused,
            )
        if state == State.STAGING_DEPLOYING:
            build = self._staging_build(release)
            made: HerokuRelease | None = None
            if build is not None and build.status == "succeeded" and build.release_id:
                made = self.platform.release(release.staging_app, build.release_id)
            return Observation(build=build, heroku_release=made, effect_refused=refused)
        if state == State.STAGING_VERIFYING:
            look = (
                StageLook()
                if release.staging_verified_at is not None
                else self.checker.look(
                    staging, release.commit, release.staging_release_version, release.check_progress, now
                )
            )
            return Observation(dynos=look.dynos, checks=look.checks, effect_refused=refused)
        if state == State.AWAITING_APPROVAL:
            approval = self._approval(release)
            return Observation(
                pull_request=approval.pull_request,
                release_branch_head=approval.branch_head,
                activity=approval.activity,
                newer_verified=next((r for r in newer if r.staging_verified_at is not None), None),
                effect_refused=refused,
            )
        if state == State.APPROVED:
            approval = self._approval(release)
            return Observation(
                pull_request=approval.pull_request,
                release_branch_head=approval.branch_head,
                activity=approval.activity,
                production_busy_with=self.guard.busy_with(production.name, others),
                environment=self.store.environment(self.settings.name, production.name),
                newer_approved=self._newer_approved(release),
                production_missing=self._production_missing(release),
                effect_refused=refused,
            )
        if state == State.BACKING_UP:
            backup = self._backup(release)
            done = backup is not None and backup.status == "completed"
            # About to promote, the approval is judged again on what Bitbucket says now; while the
            # backup runs (it may take hours), the pull request is read now and then, or when a
            # webhook says it changed, so a decline ends the release without waiting for the backup.
            approval = (
                self._approval(release) if done or self._approval_due(release, look_now) else ApprovalLook()
            )
            return Observation(
                backup=backup,
                pull_request=approval.pull_request,
                release_branch_head=approval.branch_head,
                activity=approval.activity,
                environment=self.store.environment(self.settings.name, production.name),
                effect_refused=refused,
            )
        if state == State.PROMOTING:
            promotion, target = self._promotion(release)
            return Observation(promotion=promotion, heroku_release=target, effect_refused=refused)
        if state == State.PRODUCTION_VERIFYING:
            if release.pending_action == Intent.ROLLBACK or release.rollback_release_id is not None:
                rollback = self._rollback_release(release)
                look = StageLook()
                ours = rollback is not None and rollback.id == release.rollback_release_id
                if ours and rollback is not None and rollback.status == "succeeded":
                    commit = self.checker.commit_of_slug(rollback.slug_id)  # what runs again
                    look = self.checker.look(
                        production, commit, rollback.version, release.check_progress, now
                    )
                return Observation(
                    rollback_release=rollback, dynos=look.dynos, checks=look.checks, effect_refused=refused
                )
            version = release.production_release_version
            look = self.checker.look(production, release.commit, version, release.check_progress, now)
            return Observation(dynos=look.dynos, checks=look.checks, effect_refused=refused)
        if state == State.RELEASED:
            finished = [
                b for b in self.backups.backups(release.production_app) if b.status in ("completed", "failed")
            ]
            pr_id = release.pull_request_id
            pull_request = self.source.pull_request(pr_id) if pr_id else None
            merge = None
            if pr_id and release.merge_task and pull_request is not None and pull_request.state == "OPEN":
                merge = self.source.merge_status(pr_id, release.merge_task)
            return Observation(
                pull_request=pull_request,
                merge=merge,
                latest_backup=finished[0] if finished else None,
                effect_refused=refused,
            )
        return Observation(effect_refused=refused)

    def _approval_due(self, release: Release, look: bool) -> bool:
        """Whether the release pull request of a release waiting on its backup is worth reading now:
        when a look was asked for, else every ``APPROVAL_LOOK_EVERY`` seconds."""
        assert release.id is not None
        if not release.pull_request_id:
            return False
        last = self._approval_looked.get(release.id)
        if look or last is None or time.monotonic() - last >= APPROVAL_LOOK_EVERY:
            self._approval_looked[release.id] = time.monotonic()
            return True
        return False

    def _approval(self, release: Release) -> ApprovalLook:
        """The release pull request, its branch and activity, as far as the release has them."""
        pr_id = release.pull_request_id
        return ApprovalLook(
            self.source.pull_request(pr_id) if pr_id else None,
            self.source.branch_head(release.release_branch) if release.release_branch else None,
            tuple(self.source.activity(pr_id)) if pr_id else (),
        )

    def _newer_approved(self, release: Release) -> Release | None:
        """A newer release approved or gone to production (not failed there), if any."""
        going = (
            State.APPROVED,
            State.BACKING_UP,
            State.PROMOTING,
            State.PRODUCTION_VERIFYING,
            State.RELEASED,
            State.BACKUPS_VERIFIED,
            State.BACKUPS_UNVERIFIED,
        )
        return next(
            (
                r
                for r in self.store.history(self.settings.name, 50)
                if (r.id or 0) > (release.id or 0)
                and r.approved_at is not None
                and r.state in going
                and contains(r, release)
            ),
            None,
        )

    def _production_missing(self, release: Release) -> tuple[Commit, ...]:
        """The commits (not merges) on the production branch that the release lacks."""
        head = self.source.branch_head(self.settings.source.production_branch)
        if head is None:
            return ()
        found = self.source.commits_between(head, release.commit, limit=20)
        return tuple(c for c in found if len(c.parents) <= 1)

    def _staging_build(self, release: Release) -> HerokuBuild | None:
        if release.staging_build_id is not None:
            return self.platform.build(release.staging_app, release.staging_build_id)
        # A build started before a crash carries the commit as its version: adopt it (build once).
        return next(
            (b for b in self.platform.builds(release.staging_app) if b.version == release.commit), None
        )

    def _backup(self, release: Release) -> Backup | None:
        if release.backup_id is not None:
            return self.backups.backup(release.production_app, release.backup_id)
        since = marked_since(release)
        if since is None:
            return None
        # Asked for before the answer was lost: only a backup numbered after the newest there was
        # then (an earlier release's finished a moment before is no answer to this one's request).
        floor = release.backup_floor
        return next(
            (
                b
                for b in self.backups.backups(release.production_app)
                if b.created_at >= since and (floor is None or b.num > floor)
            ),
            None,
        )

    def _promotion(self, release: Release) -> tuple[Promotion | None, HerokuRelease | None]:
        app = release.production_app
        promotion = self.platform.promotion(release.promotion_id) if release.promotion_id else None
        target: HerokuRelease | None = None
        if release.production_release_id is not None:
            target = self.platform.release(app, release.production_release_id)
        elif promotion is not None:
            release_id = next((t.release_id for t in promotion.targets if t.release_id), None)
            target = self.platform.release(app, release_id) if release_id else None
        elif (since := marked_since(release)) is not None:
            # Promoted before a crash: production has a release of the staging slug made since.
            before = release.previous_release_version or 0
            target = next(
                (
                    r
                    for r in self.platform.releases(app)
                    if r.slug_id == release.staging_slug_id and r.created_at >= since and r.version > before
                ),
                None,
            )
        return promotion, target

    def _rollback_release(self, release: Release) -> HerokuRelease | None:
        app = release.production_app
        if release.rollback_release_id is not None:
            return self.platform.release(app, release.rollback_release_id)
        since = marked_since(release)
        wanted = f"Rollback to v{release.previous_release_version}"
        after = release.production_release_version or 0
        return next(
            (
                r
                for r in self.platform.releases(app)
                if r.description.startswith(wanted)
                and since is not None
                and r.created_at >= since
                and r.version > after
            ),
            None,
        )


def contains(newer: Release, older: Release) -> bool:
    """True when ``newer`` carries ``older``'s change: the same branch (whose history is linear), or
    ``older``'s commit among ``newer``'s."""
    return newer.branch == older.branch or any(c.hash == older.commit for c in newer.commits)


def marked_since(release: Release) -> datetime | None:
    """The earliest time an effect marked pending may carry on Heroku's clock."""
    return release.pending_since - CLOCK_SKEW if release.pending_since else None
