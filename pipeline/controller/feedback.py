"""What the controller says in Bitbucket as a release moves: the commit statuses, the comments on
the merged pull requests, the release pull request's description, and declining it. Feedback is no
step of the path: a refusal is logged (or recorded) and the release goes on without it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from pipeline import domain, notes
from pipeline.config import Settings
from pipeline.controller.history import History
from pipeline.errors import Permanent
from pipeline.model import EventKind, Release, State
from pipeline.ports import ReleaseStore, SourceControl

log = logging.getLogger("pipeline.controller")

# States whose open release pull request describes the release as it moves.
DESCRIBED_STATES = frozenset(
    {
        State.STAGING_VERIFYING,
        State.AWAITING_APPROVAL,
        State.APPROVED,
        State.BACKING_UP,
        State.PROMOTING,
        State.PRODUCTION_VERIFYING,
        State.RELEASED,
    }
)
# States of a release that reached production and stayed there.
PRODUCTION_STATES = (State.RELEASED, State.BACKUPS_VERIFIED, State.BACKUPS_UNVERIFIED)


class Feedback:
    def __init__(
        self,
        settings: Settings,
        source: SourceControl,
        store: ReleaseStore,
        history: History,
        policy: domain.Policy,
        web_url: Callable[[str], str],
    ) -> None:
        self.settings = settings
        self.source = source
        self.store = store
        self.history = history
        self.policy = policy
        self.web_url = web_url

    def post_status(self, release: Release, action: domain.PostStatus) -> None:
        """Post the stage's commit status (the same key overwrites: idempotent)."""
        stage = self.settings.staging if action.key == domain.STAGING_STATUS else self.settings.production
        try:
            url = action.url or self.web_url(stage.app)
            name = f"{stage.name.capitalize()} ({stage.app})"
            self.source.set_status(release.commit, action.key, action.state, name, action.description, url)
        except Permanent as exc:  # refused for good: feedback is not a step of the path, go on without it
            log.warning("release %s: could not post %s %s: %s", release.id, action.key, action.state, exc)

    def notify_changes(self, release: Release, action: domain.NotifyChanges) -> Release:
        """Comment on each merged pull request of the release that its change reached a stage.

        Write-ahead per pull request: its key goes into ``release.feedback`` with a "?" and the time
        before the comment is posted, and without once it is. A pass that finds such a mark leaves
        it alone while the comment may still be landing (``Policy.intent_grace``: a post whose answer
        timed out may be carried out later); after that, it reads the pull request's comments and
        posts again only when none carries the marker."""
        marker = notes.comment_marker(release, action.stage)
        announced: set[str] = set()
        if action.stage == "staging":  # once on staging is enough, whichever release took it there
            for other in self.store.history(self.settings.name, 200):
                if other.id != release.id:
                    announced.update(k for k in other.feedback if "?" not in k)
        stage = self.settings.staging if action.stage == "staging" else self.settings.production
        version = (
            release.staging_release_version
            if action.stage == "staging"
            else release.rollback_release_version or release.production_release_version
        )
        for change in release.changes:
            key = f"{action.stage}:#{change.id}"
            if key in release.feedback or key in announced:
                continue
            marks = [k for k in release.feedback if k.startswith(f"{key}?")]
            asked = max((t for k in marks if (t := _marked_at(k)) is not None), default=None)
            now = self.history.clock()
            if asked is not None and now - asked < self.policy.intent_grace:
                continue  # posted a moment ago, answer unknown: it may still land
            text = notes.change_comment(release, change, action.stage, stage.app, version)
            try:
                posted = bool(marks) and any(
                    c.text.startswith(marker) for c in self.source.comments(change.id)
                )
                if not posted:
                    release = self.note(release, add=f"{key}?{now.isoformat()}", remove=marks)
                    self.source.comment(change.id, text)
            except Permanent as exc:  # feedback is not a step of the path: say so and go on
                log.warning(
                    "release %s: could not comment on pull request #%s: %s", release.id, change.id, exc
                )
            release = self.note(
                release, add=key, remove=[k for k in release.feedback if k.startswith(f"{key}?")]
            )
        return release

    def note(self, release: Release, *, add: str, remove: Sequence[str] = ()) -> Release:
        """Keep in the release what was said (a feedback key), so it is said once."""
        keys = (*(k for k in release.feedback if k != add and k not in remove), add)
        return self.history.save(release, {"feedback": keys})

    def description(self, release: Release) -> str:
        """The release pull request's description for the release as it is now."""
        events = self.store.events(release.id) if release.id is not None else []
        since = production_release_before(self.store, self.settings.name, release.id or 0)
        branch = self.settings.source.production_branch
        chain = self.store.chain_head()
        return notes.pull_request_description(release, self.policy.approval, events, since, branch, chain)

    def describe(self, release: Release) -> Release:
        """Keep the open release pull request's description current: rewritten (one PUT) when what
        it says has changed since it was last written."""
        if release.pull_request_id is None or release.state not in DESCRIBED_STATES:
            return release
        text = self.description(release)
        digest = notes.digest(text)
        if digest == release.description_digest:
            return release
        try:
            self.source.update_pull_request(release.pull_request_id, notes.title(release), text)
        except Permanent as exc:
            # Closed meanwhile (merged, declined: nothing left to describe), or refused: said, and
            # tried again at the next look (the digest is kept only for what was written).
            log.warning(
                "release %s: could not update pull request #%s: %s", release.id, release.pull_request_id, exc
            )
            return release
        return self.history.save(release, {"description_digest": digest})

    def decline(self, release: Release, action: domain.DeclinePullRequest) -> Release:
        """Decline the release pull request with the decision's comment, and say so in the history."""
        if release.pull_request_id is None:
            return release
        try:
            self.source.decline_pull_request(release.pull_request_id, action.comment)
        except Permanent as exc:
            return self.history.record(
                release, EventKind.ReleasePullRequestNotDeclined, str(exc), keep_reason=True
            )
        return self.history.record(
            release,
            EventKind.ReleasePullRequestDeclined,
            action.comment,
            refs={"pull_request": str(release.pull_request_id)},
            keep_reason=True,
        )


def _marked_at(mark: str) -> datetime | None:
    """When a "key?time" mark was written (None: a mark from before marks carried their time)."""
    try:
        return datetime.fromisoformat(mark.partition("?")[2])
    except ValueError:
        return None


def production_release_before(store: ReleaseStore, pipeline: str, release_id: int) -> Release | None:
    """The newest release before ``release_id`` that reached production and stayed there: what its
    release notes count from."""
    return next(
        (
            r
            for r in store.history(pipeline, 500)
            if (r.id or 0) < release_id and r.state in PRODUCTION_STATES
        ),
        None,
    )
