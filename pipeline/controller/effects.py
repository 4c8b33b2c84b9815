"""The effects a release's decisions ask for, carried out on Bitbucket and Heroku: the staging build,
the release pull request, the backup, the promotion, the rollback after a failed verification, the
merge, and the pull request that brings a hotfix back.

An effect that creates something is marked pending in the store before it is asked for, and its id
is recorded as soon as the answer brings it (``History.mark_pending``); an effect refused for good
ends the release with the reason, said on its commit too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pipeline import domain, notes
from pipeline.config import Settings
from pipeline.controller.feedback import Feedback
from pipeline.controller.history import History
from pipeline.errors import ExternalError, Permanent
from pipeline.model import EventKind, Intent, Release, ReleaseChanges, State
from pipeline.ports import Backups, Platform, SourceControl


class ReleaseEffects:
    def __init__(
        self,
        settings: Settings,
        source: SourceControl,
        platform: Platform,
        backups: Backups,
        history: History,
        feedback: Feedback,
        reviewers: tuple[str, ...] = (),
        fence: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.fence = fence  # right before each call that creates something: the lease is still ours
        self.reviewers = reviewers  # who Bitbucket asks to review a release pull request
        self.source = source
        self.platform = platform
        self.backups = backups
        self.history = history
        self.feedback = feedback
        # Effects answered with an error in this process: they did not happen (or what did is
        # already visible), so there is no need to wait out the grace before asking again.
        self._refused: set[tuple[int | None, Intent]] = set()

    def refused(self, release: Release) -> bool:
        """Was the effect the release has marked pending answered with an error in this process?"""
        return release.pending_action is not None and (release.id, release.pending_action) in self._refused

    @contextmanager
    def _answered(self, release: Release, intent: Intent) -> Iterator[None]:
        """Around the call that creates something: an error answer (not a timeout, which may still
        be processed) means no need to wait out the grace period before trying again."""
        self._refused.discard((release.id, intent))
        try:
            yield
        except ExternalError as exc:
            # An error answer means nothing was made, or what was made is listed already - except
            # a promotion, whose production release appears a little later: only a 4xx proves it.
            if exc.status is not None and (intent != Intent.PROMOTE or exc.status < 500):
                self._refused.add((release.id, intent))
            raise

    def _fail(self, release: Release, kind: EventKind, why: str, to: State, status_key: str) -> Release:
        """An effect was refused for good: say so on the commit, then record the end."""
        self.feedback.post_status(release, domain.PostStatus(status_key, "FAILED", why[:140]))
        return self.history.record(
            release, kind, why, to=to, fields={"pending_action": None, "pending_since": None}
        )

    # --- Staging --------------------------------------------------------------------------------

    def deploy_to_staging(self, release: Release) -> Release:
        app = release.staging_app
        try:
            # Nothing is created on Heroku until the build starts: the mark goes just before it.
            tarball = self.source.archive(release.commit, release.branch)
            source_url = self.platform.upload_source(tarball)
            checksum = "SHA256:" + hashlib.sha256(tarball).hexdigest()
            size = f"{len(tarball) / 1024:.0f} KiB"
            release = self.history.mark_pending(
                release,
                Intent.DEPLOY,
                EventKind.StagingBuildRequested,
                f"building {release.commit[:12]} ({size}) on {app}",
            )
            self.fence()
            with self._answered(release, Intent.DEPLOY):
                build = self.platform.start_build(app, source_url, checksum, release.commit)
        except Permanent as exc:
            why = f"could not build {release.commit[:12]} on {app}: {exc}"
            return self._fail(
                release, EventKind.StagingBuildFailed, why, State.STAGING_FAILED, domain.STAGING_STATUS
            )
        return self.history.record(
            release,
            EventKind.StagingBuildStarted,
            f"Heroku build {build.id} of {release.commit[:12]}",
            fields={"staging_build_id": build.id, "pending_action": None, "pending_since": None},
            refs={"build": build.id},
        )

    def open_pull_request(self, release: Release) -> Release:
        """Pin ``release/<id>-<commit>`` at the commit and open the release pull request (or find it
        open). The commit in the name keeps a store started afresh (ids from 1 again) from meeting
        the branches of an earlier one, except for the very same commit, which is no harm."""
        branch = f"release/{release.id}-{release.commit[:7]}"
        target = self.settings.source.production_branch
        try:
            self.source.create_branch(branch, release.commit)
            existing = self.source.find_pull_request(branch, target)
            if existing is not None and existing.state == "OPEN":
                pr = existing
            else:
                pinned = release.changed({"release_branch": branch})
                description = self.feedback.description(pinned)
                title = notes.title(pinned)
                pr = self.source.open_pull_request(branch, target, title, description, self.reviewers)
        except Permanent as exc:
            why = f"could not open the release pull request from {branch}: {exc}; a person must fix it"
            if why == release.reason:
                return release
            return self.history.record(release, EventKind.ReleasePullRequestFailed, why)
        return self.history.record(
            release,
            EventKind.ReleasePullRequestOpened,
            f"pull request #{pr.id} from {branch} (pinned at {release.commit[:12]}) into {target}: {pr.url}",
            fields={"release_branch": branch, "pull_request_id": pr.id, "pull_request_url": pr.url},
            refs={"pull_request": str(pr.id), "branch": branch},
        )

    # --- Production -----------------------------------------------------------------------------

    def capture_backup(self, release: Release) -> Release:
        app = release.production_app
        floor = max((b.num for b in self.backups.backups(app)), default=0)
        release = self.history.mark_pending(
            release,
            Intent.BACKUP,
            EventKind.BackupRequested,
            f"capturing a backup of {app} (the newest now: #{floor})",
            {"backup_floor": floor},
        )
        try:
            self.fence()
            with self._answered(release, Intent.BACKUP):
                backup = self.backups.capture(app)
        except Permanent as exc:
            why = f"could not capture a backup of {app}: {exc}; production was not changed"
            return self._fail(
                release, EventKind.BackupFailed, why, State.PROMOTION_FAILED, domain.PRODUCTION_STATUS
            )
        return self.history.record(
            release,
            EventKind.BackupCaptureStarted,
            f"backup {backup.name} of {app} started",
            fields={
                "backup_id": backup.id,
                "backup_name": backup.name,
                "pending_action": None,
                "pending_since": None,
            },
            refs={"backup": backup.id},
            keep_reason=True,
        )

    def promote(self, release: Release) -> Release:
        prod = self.settings.production
        live = self.platform.current_release(prod.app)
        release = self.history.mark_pending(
            release,
            Intent.PROMOTE,
            EventKind.PromotionRequested,
            f"promoting {release.staging_app} v{release.staging_release_version} to {prod.app} "
            f"(now v{live.version if live else '-'})",
            # Recorded once: a second try must not take the half-promoted release for the previous one.
            {
                "previous_release_id": release.previous_release_id or (live.id if live else None),
                "previous_release_version": release.previous_release_version
                or (live.version if live else None),
            },
        )
        try:
            assert release.staging_release_id is not None and prod.pipeline is not None
            self.fence()
            promotion = self.platform.promote(
                prod.pipeline, release.staging_app, release.staging_release_id, prod.app
            )
        except Permanent as exc:
            why = f"could not promote to {prod.app}: {exc}; production was not changed"
            return self._fail(
                release, EventKind.PromotionFailed, why, State.PROMOTION_FAILED, domain.PRODUCTION_STATUS
            )
        return self.history.record(
            release,
            EventKind.PromotionStarted,
            f"Heroku promotion {promotion.id}",
            fields={"promotion_id": promotion.id},
            refs={"promotion": promotion.id},
            keep_reason=True,
        )

    def roll_back(self, release: Release, action: domain.RollBack) -> Release:
        """Production failed its checks: a new release of the slug it ran before."""
        app = release.production_app
        release = self.history.mark_pending(
            release,
            Intent.ROLLBACK,
            EventKind.RollbackRequested,
            f"rolling {app} back to v{action.version}: {action.why}",
            {"reason": action.why},
        )
        try:
            self.fence()
            with self._answered(release, Intent.ROLLBACK):
                rollback = self.platform.rollback(app, action.release_id)
        except Permanent as exc:
            why = (
                f"{action.why}; the rollback to v{action.version} failed too: {exc}. Production runs "
                f"v{release.production_release_version}: roll back by hand "
                f"(`heroku releases:rollback v{action.version} -a {app}`)"
            )
            return self._fail(
                release, EventKind.RollbackFailed, why, State.PROMOTION_FAILED, domain.PRODUCTION_STATUS
            )
        return self.history.record(
            release,
            EventKind.RollbackStarted,
            f"{app} v{rollback.version} runs v{action.version}'s slug; verifying it",
            fields={
                "rollback_release_id": rollback.id,
                "rollback_release_version": rollback.version,
                "pending_action": None,
                "pending_since": None,
                "verification_started_at": self.history.clock(),
                "check_progress": (),
            },
            refs={"release": rollback.id},
            keep_reason=True,
        )

    # --- After the release ----------------------------------------------------------------------

    def merge(self, release: Release) -> Release:
        """Merge the release pull request, once: the intent is marked before it is asked for, and a
        merge Bitbucket runs as a task is recorded with the task, which later passes poll."""
        release = self.feedback.describe(release)  # its last word before it closes
        pr_id = release.pull_request_id
        assert pr_id is not None
        message = f"Release {release.id}: {release.commit[:12]} (merged by the release controller)"
        into = self.settings.source.production_branch
        release = self.history.mark_pending(
            release, Intent.MERGE, EventKind.ReleaseMergeRequested, f"merging #{pr_id} into {into}"
        )
        try:
            self.fence()
            merge = self.source.merge_pull_request(pr_id, message)
        except Permanent as exc:
            why = (
                f"could not merge release pull request #{pr_id}: {exc}; "
                "production runs the release: merge it by hand"
            )
            done: ReleaseChanges = {
                "pending_action": None,
                "pending_since": None,
                "feedback": (*release.feedback, "merge"),
            }
            return self.history.record(
                release, EventKind.ReleaseMergeFailed, why, fields=done, keep_reason=True
            )
        if merge.status == "pending":
            return self.history.record(
                release,
                EventKind.ReleaseMergeStarted,
                f"Bitbucket merges #{pr_id} into {into} as a task: {merge.task}",
                fields={"merge_task": merge.task},
                refs={"pull_request": str(pr_id)},
                keep_reason=True,
            )
        return self.history.record(
            release,
            EventKind.ReleasePullRequestMerged,
            f"#{pr_id} merged into {into}",
            fields={"pending_action": None, "pending_since": None},
            refs={"pull_request": str(pr_id), "commit": merge.commit},
            keep_reason=True,
        )

    def open_back_merge(self, release: Release) -> Release:
        """Open (or find) the pull request that brings a released hotfix back into the watched branch."""
        src = self.settings.source
        title = f"Bring hotfix release {release.id} ({release.branch}) back into {src.branch}"
        text = (
            f"Release {release.id} took `{release.commit[:12]}` from `{release.branch}` to production. "
            f"Merge `{src.production_branch}` into `{src.branch}`: until then, a candidate of `{src.branch}` "
            "lacks the fix, and the release controller will not promote it (it would take the fix out of "
            "production)."
        )
        try:
            pr = self.source.open_pull_request(src.production_branch, src.branch, title, text)
            said = f"pull request #{pr.id} brings {release.branch} back into {src.branch}: {pr.url}"
            refs = {"pull_request": str(pr.id)}
        except Permanent as exc:  # nothing to bring back (develop has it), or refused: say so once
            said, refs = f"no pull request into {src.branch} opened: {exc}", {}
        release = self.history.save(release, {"feedback": (*release.feedback, "backmerge")})
        return self.history.record(release, EventKind.BackMergeRequested, said, refs=refs, keep_reason=True)
