"""Finding new candidates: a head of the watched branch not seen before becomes a release, carrying
the commits production's branch lacks and the pull requests that merged them (its release notes)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from pipeline.config import Settings
from pipeline.controller.history import History
from pipeline.controller.observe import CLOCK_SKEW
from pipeline.domain import CONTROLLER
from pipeline.model import EventKind, Release, State
from pipeline.ports import ReleaseStore, SourceControl

log = logging.getLogger("pipeline.controller")


class Detector:
    def __init__(
        self,
        settings: Settings,
        source: SourceControl,
        store: ReleaseStore,
        history: History,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.source = source
        self.store = store
        self.history = history
        self.clock = clock

    def detect(self) -> int | None:
        """Record a new candidate when the watched branch has a head we have not seen; its id."""
        src = self.settings.source
        head = self.source.branch_head(src.branch)
        if head is None:
            log.warning("branch %s does not exist in %s/%s", src.branch, src.workspace, src.repository)
            return None
        if self.store.by_commit(self.settings.name, head) is not None:
            return None
        production_head = self.source.branch_head(src.production_branch)
        release = self.candidate(src.branch, head, production_head)
        if release is None:
            log.info(
                "%s %s is already on %s: nothing to release", src.branch, head[:12], src.production_branch
            )
            return None
        commits, changes = release.commits, release.changes
        merged_by_pr = next((c for c in changes if c.merge_commit == head), None)
        what = (
            f"pull request #{merged_by_pr.id} {merged_by_pr.title!r}"
            if merged_by_pr
            else repr((commits[0].message.splitlines() or [""])[0])
        )
        reason = (
            f"new head of {src.branch}: {head[:12]} ({what}); {len(commits)} commit(s) and "
            f"{len(changes)} pull request(s) not yet on {src.production_branch}"
        )
        self.history.crash_point("before:ReleaseDetected")
        stored = self.store.add(release, EventKind.ReleaseDetected, reason, CONTROLLER)
        self.history.crash_point("after:ReleaseDetected")
        log.info("release %s detected: %s", stored.id, reason)
        return stored.id

    def candidate(self, branch: str, head: str, production_head: str | None) -> Release | None:
        """A new release of ``head`` of ``branch``: the commits production's branch (at
        ``production_head``) lacks, and the pull requests merged into ``branch`` that brought them
        (the release notes). None when production has them all."""
        commits = self.source.commits_between(head, production_head)
        if not commits:
            return None
        oldest = min(c.date for c in commits) - CLOCK_SKEW
        changes = self.source.merged_pull_requests(branch, [c.hash for c in commits], since=oldest)
        now = self.clock()
        return Release(
            pipeline=self.settings.name,
            commit=head,
            branch=branch,
            state=State.DETECTED,
            created_at=now,
            updated_at=now,
            commits=tuple(commits),
            changes=tuple(changes),
            base_commit=production_head,
            staging_app=self.settings.staging.app,
            production_app=self.settings.production.app,
        )
