"""One reconcile pass of one pipeline: observe -> decide -> act -> record.

A pass never waits on Heroku or Bitbucket: it looks, lets ``pipeline.domain.decide`` choose, does
what was chosen (each effect marked pending in the store before it runs, its id recorded as soon as
it is known) and moves on. The next pass picks up where this one stopped, after a crash too.

Releases are advanced newest first, so that a newer candidate's pull request exists by the time an
older one is superseded and its decline comment can point at it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import checks
from pipeline import domain, notes
from pipeline.config import CheckSpec, Settings, StageSettings
from pipeline.errors import ExternalError, Permanent, Refused, Temporary
from pipeline.model import (
    Backup,
    CheckProgress,
    CheckResult,
    Commit,
    Event,
    HerokuBuild,
    HerokuRelease,
    Release,
    RollbackState,
    State,
)
from pipeline.ports import Backups, Platform, ReleaseStore, SourceControl
from pipeline.rollbacks import RollbackRunner

log = logging.getLogger("pipeline.controller")

# How far Heroku's clock may be behind ours when we look for an effect by the time we asked for it.
CLOCK_SKEW = timedelta(seconds=30)
# At most this many decide/act rounds for one release in one pass (a pass moves a release as far
# as it can go without waiting; the bound keeps a mistake from spinning).
ROUNDS_PER_PASS = 12
LOCK_TTL = timedelta(minutes=5)
CRASH_EXIT_STATUS = 70
# Waits after a Temporary error: a 5xx or a timeout is tried again soon; a rate limit waits longer.
SERVER_ERROR_RETRY = 5.0
RATE_LIMITED_RETRY = 60.0
DETECT_EVERY = 5.0  # seconds between two looks at the watched branch, unless told to look
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
LOOK_EVERY = 10.0  # seconds between two looks at a release waiting on a person or CI, unless told to
WINDOW_LOOK_EVERY = 60.0  # at most between two looks at a release waiting for a window or a freeze


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ReleaseReport:
    release_id: int
    commit: str
    state: State
    moved: bool
    wait: domain.Wait | None


@dataclass
class RollbackReport:
    rollback_id: int
    environment: str
    state: RollbackState
    moved: bool
    wait: domain.Wait | None


@dataclass
class PassReport:
    """What one pass did: which releases and rollbacks moved, and what each waits on now."""

    releases: list[ReleaseReport] = field(default_factory=list)
    rollbacks: list[RollbackReport] = field(default_factory=list)
    detected: int | None = None
    skipped: str = ""  # why the pass did nothing (another pass holds the lock)
    problem: str = ""  # what kept the pass from looking for new candidates

    @property
    def items(self) -> list[ReleaseReport | RollbackReport]:
        return [*self.rollbacks, *self.releases]

    @property
    def moving(self) -> bool:
        """True when another pass soon may move something without a person or the clock."""
        if self.detected is not None:
            return True
        return any(r.moved or (r.wait is not None and r.wait.on.moves_by_itself) for r in self.items)

    @property
    def moved_any(self) -> bool:
        """True when this pass changed something (a new candidate, a release moved)."""
        return self.detected is not None or any(r.moved for r in self.items)

    def pause(self, now: datetime) -> float:
        """Seconds until another pass is worth it: 1 s while Heroku works (as its CLI polls), else
        until the next retry is due (a check's interval, a server error's back-off)."""
        if self.detected is not None or any(
            r.moved or (r.wait is not None and r.wait.on == domain.WaitingOn.HEROKU) for r in self.items
        ):
            return 1.0
        dues = [r.wait.until for r in self.items if r.wait and r.wait.until and r.wait.on.moves_by_itself]
        if not dues:
            return 1.0
        return min(max((min(dues) - now).total_seconds(), 0.05), 60.0)


class Controller:
    """Moves one pipeline's releases along the path. Build it with ``pipeline.bootstrap``."""

    def __init__(
        self,
        settings: Settings,
        source: SourceControl,
        platform: Platform,
        backups: Backups,
        store: ReleaseStore,
        *,
        controller_account: Any = None,
        approvers: frozenset[str] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.source = source
        self.platform = platform
        self.backups = backups
        self.store = store
        self.clock = clock
        self.policy = policy_of(settings, controller_account, approvers)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._web_urls: dict[str, str] = {}
        self._last_detect: float | None = None
        self._refused: set[tuple[int | None, str]] = set()
        self.rollbacks = RollbackRunner(self)
        self._parked: dict[
            int, tuple[float, domain.Wait]
        ] = {}  # release id -> (look again at, wait)  # effects answered with an error, this process

    # --- The pass ------------------------------------------------------------------------------

    def tick(self, *, detect: bool | None = None) -> PassReport:
        """One pass over the pipeline: detect a new candidate, then move every active release.

        ``detect``: True looks at the watched branch now (a push was reported); None looks when the
        last look is ``DETECT_EVERY`` old, so quick passes that follow a build do not spend the
        Bitbucket rate budget (1,000 requests an hour) re-reading an unchanged branch."""
        lock = self.lock_name
        if not self._take_lock(lock):
            holder = self.store.lock_holder(lock, self.clock())
            return PassReport(skipped=f"another pass of {self.settings.name} is running ({holder})")
        try:
            report = PassReport()
            # Rollbacks people asked for come first: while one runs, nothing deploys there.
            for rollback in self.store.rollbacks(self.settings.name, active=True):
                report.rollbacks.append(self.rollbacks.advance(rollback))
            due = self._last_detect is None or time.monotonic() - self._last_detect >= DETECT_EVERY
            if detect or (detect is None and due):
                try:
                    self._last_detect = time.monotonic()
                    report.detected = self._detect()
                except Temporary as exc:
                    log.warning("detection deferred: %s", exc)
                except Permanent as exc:
                    log.error("cannot look for new candidates: %s", exc)
                    report.problem = f"cannot look for new candidates: {exc}"
            for release in self.store.active(self.settings.name):
                if not self.store.acquire_lock(lock, self.holder, self.clock(), LOCK_TTL.total_seconds()):
                    # The lease ran out and another process took it: stop before doing anything twice.
                    report.skipped = "the pass lock was lost mid-pass; the other holder carries on"
                    break
                report.releases.append(self._advance(release, look=bool(detect)))
            return report
        finally:
            self.store.release_lock(lock, self.holder)

    @property
    def lock_name(self) -> str:
        """The store lock every pass holds (and anything else that starts a deployment)."""
        return f"pass:{self.settings.name}"

    @contextmanager
    def pass_lock(self, wait: float = 60.0) -> Iterator[None]:
        """Hold the pass lock for a request that must not run beside a pass (a rollback starting),
        waiting up to ``wait`` seconds for a running pass to end; Refused when it does not."""
        deadline = time.monotonic() + wait
        while not self._take_lock(self.lock_name):
            if time.monotonic() > deadline:
                holder = self.store.lock_holder(self.lock_name, self.clock())
                raise Refused(
                    f"a pass of {self.settings.name} is running ({holder}) and did not end in {wait:g}s"
                )
            time.sleep(0.2)
        try:
            yield
        finally:
            self.store.release_lock(self.lock_name, self.holder)

    def _take_lock(self, lock: str) -> bool:
        """Take the pass lock; a lease left by a dead process on this host is taken over at once
        (another host's lease runs out after LOCK_TTL)."""
        now = self.clock()
        if self.store.acquire_lock(lock, self.holder, now, LOCK_TTL.total_seconds()):
            return True
        holder = self.store.lock_holder(lock, now)
        if holder is None or not _dead_here(holder):
            return False
        log.warning("taking over the pass lock from %s, which is no longer running", holder)
        self.store.release_lock(lock, holder)
        return self.store.acquire_lock(lock, self.holder, now, LOCK_TTL.total_seconds())

    def _detect(self) -> int | None:
        """Record a new candidate when the watched branch has a head we have not seen."""
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
        self.crash_point("before:ReleaseDetected")
        stored = self.store.add(release, "ReleaseDetected", reason, domain.CONTROLLER)
        self.crash_point("after:ReleaseDetected")
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

    def _advance(self, release: Release, *, look: bool = False) -> ReleaseReport:
        """Move one release as far as it goes without waiting.

        A release that waits on a person or on CI is looked at again only every ``LOOK_EVERY``
        seconds (or when ``look``), so quick passes that follow another release's build do not
        spend the Bitbucket rate budget re-reading an unchanged pull request."""
        assert release.id is not None
        release_id = release.id
        parked = self._parked.get(release_id)
        if parked is not None and not look and time.monotonic() < parked[0]:
            return ReleaseReport(release_id, release.commit, release.state, False, parked[1])
        self._parked.pop(release_id, None)
        moved = False
        wait: domain.Wait | None = None
        for _ in range(ROUNDS_PER_PASS):
            now = self.clock()
            before = release
            try:
                seen = self._observe(release, now)
                decision = domain.decide(release, seen, self.policy, now)
                wait = decision.wait
                if not decision.does_something:
                    break
                for action in decision.actions:
                    if isinstance(action, domain.Wait):
                        continue
                    release = self._act(release, action)
            except Temporary as exc:
                log.warning("release %s: %s; trying again next pass", release.id, exc)
                delay = min(exc.retry_after, RATE_LIMITED_RETRY if exc.status == 429 else SERVER_ERROR_RETRY)
                until = self.clock() + timedelta(seconds=delay)
                wait = domain.Wait(domain.WaitingOn.RETRY, f"{exc}; trying again", until)
                release = self.store.get(release_id)  # an effect may have recorded its mark: keep it
                break
            except Permanent as exc:
                # Seeing the release failed for good (a pull request or app that vanished, access
                # withdrawn): say so and leave the release where it is; the other releases go on.
                log.error("release %s: %s", release.id, exc)
                wait = domain.Wait(domain.WaitingOn.PERSON, f"{exc}: a person must fix this")
                release = self.store.get(release_id)
                break
            if release == before:
                # Nothing changed: only idempotent feedback ran beside a wait (which stands), or an
                # effect was refused for good, already said: that is a wait on a person.
                if wait is None:
                    wait = domain.Wait(domain.WaitingOn.PERSON, release.reason)
                break
            moved = True
            if release.state != before.state:
                self._parked.clear()  # a move may concern the others (supersession, a free stage)
            if release.state.is_final:
                wait = None
                break
        if wait is not None and wait.detail != release.reason:
            # What it waits on is the release's last word until it moves again (``pipeline status``).
            release = self.store.save(replace(release, reason=wait.detail), [])
        if moved:
            self._spend_override(release)
        try:
            release = self._describe(release)
        except Temporary as exc:
            log.warning("release %s: the release pull request's description waits: %s", release.id, exc)
        if wait is not None:
            self._park(release_id, wait)
        return ReleaseReport(release_id, release.commit, release.state, moved, wait)

    def _park(self, release_id: int, wait: domain.Wait) -> None:
        """A release waiting on a person, CI or another release is looked at again every
        ``LOOK_EVERY`` seconds; one waiting for a deploy window or a freeze's end, when it opens (at
        least every ``WINDOW_LOOK_EVERY``: its approval is judged again before it goes anyway). A
        webhook's pass looks at once, and a release that moves unparks the others."""
        if wait.on == domain.WaitingOn.WINDOW:
            until = (wait.until - self.clock()).total_seconds() if wait.until else WINDOW_LOOK_EVERY
            self._parked[release_id] = (
                time.monotonic() + min(max(until, LOOK_EVERY), WINDOW_LOOK_EVERY),
                wait,
            )
        elif wait.on in (domain.WaitingOn.PERSON, domain.WaitingOn.CI, domain.WaitingOn.STAGE):
            self._parked[release_id] = (time.monotonic() + LOOK_EVERY, wait)

    # --- Observe -------------------------------------------------------------------------------

    def _observe(self, release: Release, now: datetime) -> domain.Observation:
        """Read what the release's state needs, and nothing else (rate budgets are small)."""
        state = release.state
        others = [r for r in self.store.active(self.settings.name) if r.id != release.id]
        # Only a newer release that contains this one may take its place (a hotfix and develop
        # are different lines: neither supersedes the other).
        newer = [r for r in others if (r.id or 0) > (release.id or 0) and contains(r, release)]
        seen: dict[str, Any] = {"effect_refused": (release.id, release.pending_action) in self._refused}
        if state in (State.DETECTED, State.GATED):
            # Only a newer candidate that passed its gate takes this one's place.
            seen["newer"] = next((r for r in newer if r.state != State.DETECTED), None)
        if state == State.DETECTED:
            seen["build_statuses"] = statuses = self.source.build_statuses(release.commit)
            if all(statuses.get(k) == "SUCCESSFUL" for k in self.settings.source.required_builds):
                seen["production_missing"] = self._production_missing(release)  # about to pass the gate
        if state == State.GATED:
            seen["staging_busy_with"] = self.busy_with(self.settings.staging.name, others)
            seen["environment"] = self.store.environment(self.settings.name, self.settings.staging.name)
        if state == State.STAGING_DEPLOYING:
            seen["build"] = self._staging_build(release)
            build = seen["build"]
            if build is not None and build.status == "succeeded" and build.release_id:
                seen["heroku_release"] = self.platform.release(release.staging_app, build.release_id)
        if state == State.STAGING_VERIFYING and release.staging_verified_at is None:
            version = release.staging_release_version
            seen.update(
                self.verify_stage(self.settings.staging, release.commit, version, release.check_progress, now)
            )
        if state in (State.AWAITING_APPROVAL, State.APPROVED, State.RELEASED) and release.pull_request_id:
            seen["pull_request"] = self.source.pull_request(release.pull_request_id)
        if state in (State.AWAITING_APPROVAL, State.APPROVED) and release.release_branch:
            seen["release_branch_head"] = self.source.branch_head(release.release_branch)
        if state in (State.AWAITING_APPROVAL, State.APPROVED) and release.pull_request_id:
            seen["activity"] = tuple(self.source.activity(release.pull_request_id))
        if state == State.AWAITING_APPROVAL:
            seen["newer_verified"] = next((r for r in newer if r.staging_verified_at is not None), None)
        if state == State.APPROVED:
            seen["production_busy_with"] = self.busy_with(self.settings.production.name, others)
            seen["environment"] = self.store.environment(self.settings.name, self.settings.production.name)
            seen["newer_approved"] = self._newer_approved(release)
            seen["production_missing"] = self._production_missing(release)
        if state == State.BACKING_UP:
            seen["backup"] = backup = self._backup(release)
            if backup is not None and backup.status == "completed" and release.pull_request_id:
                # About to promote: the approval is judged again, on what Bitbucket says now.
                seen["pull_request"] = self.source.pull_request(release.pull_request_id)
                seen["release_branch_head"] = self.source.branch_head(release.release_branch or "")
                seen["activity"] = tuple(self.source.activity(release.pull_request_id))
        if state == State.PROMOTING:
            seen.update(self._promotion(release))
        if state == State.PRODUCTION_VERIFYING:
            if release.pending_action == "rollback" or release.rollback_release_id is not None:
                seen["rollback_release"] = rollback = self._rollback_release(release)
                if (
                    rollback is not None
                    and rollback.id == release.rollback_release_id
                    and rollback.status == "succeeded"
                ):
                    commit = self.commit_of_slug(rollback.slug_id)  # what runs again
                    seen.update(
                        self.verify_stage(
                            self.settings.production, commit, rollback.version, release.check_progress, now
                        )
                    )
            else:
                version = release.production_release_version
                seen.update(
                    self.verify_stage(
                        self.settings.production, release.commit, version, release.check_progress, now
                    )
                )
        if state == State.RELEASED:
            finished = [
                b for b in self.backups.backups(release.production_app) if b.status in ("completed", "failed")
            ]
            seen["latest_backup"] = finished[0] if finished else None
        return domain.Observation(**seen)

    def busy_with(self, stage: str, others: list[Release] | None = None) -> str | None:
        """What deploys to ``stage`` now: a release there (of ``others``, default every active one),
        or a rollback a person asked for."""
        if others is None:
            others = self.store.active(self.settings.name)
        there = next(
            (
                r
                for r in others
                if (r.state.in_staging if stage == self.settings.staging.name else r.state.in_production)
            ),
            None,
        )
        if there is not None:
            return f"release {there.id} ({there.state})"
        rollback = next(
            (r for r in self.store.rollbacks(self.settings.name, active=True) if r.environment == stage), None
        )
        if rollback is not None:
            return f"rollback {rollback.id} by {rollback.requested_by} ({rollback.state})"
        return None

    def stage(self, name: str) -> StageSettings:
        return next(s for s in self.settings.stages if s.name == name)

    def commit_of_slug(self, slug_id: str | None) -> str:
        """The commit of the controller's release built as ``slug_id`` ("" when it is not ours)."""
        found = next(
            (
                r
                for r in self.store.history(self.settings.name, 500)
                if slug_id and r.staging_slug_id == slug_id
            ),
            None,
        )
        return found.commit if found else ""

    @property
    def clock_skew(self) -> timedelta:
        return CLOCK_SKEW

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

    def verify_stage(
        self,
        stage: StageSettings,
        commit: str,
        version: int | None,
        progress: tuple[CheckProgress, ...],
        now: datetime,
    ) -> dict[str, Any]:
        """The stage's dynos, and an attempt of every check that is due (by ``progress``) once the
        dynos run ``version`` (of ``commit``); nothing when no check is due yet."""
        due = due_checks(stage, progress, now)
        if not due:
            return {}
        dynos = tuple(self.platform.dynos(stage.app))
        if domain.dyno_problem(dynos, version)[0] is not None:
            return {"dynos": dynos}
        return {"dynos": dynos, "checks": self._run_checks(stage, commit, version, due)}

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
        since = _since(release)
        if since is None:
            return None
        return next((b for b in self.backups.backups(release.production_app) if b.created_at >= since), None)

    def _promotion(self, release: Release) -> dict[str, Any]:
        app = release.production_app
        promotion = self.platform.promotion(release.promotion_id) if release.promotion_id else None
        target: HerokuRelease | None = None
        if release.production_release_id is not None:
            target = self.platform.release(app, release.production_release_id)
        elif promotion is not None:
            release_id = next((t.release_id for t in promotion.targets if t.release_id), None)
            target = self.platform.release(app, release_id) if release_id else None
        elif (since := _since(release)) is not None:
            # Promoted before a crash: production has a release of the staging slug made since.
            target = next(
                (
                    r
                    for r in self.platform.releases(app)
                    if r.slug_id == release.staging_slug_id and r.created_at >= since
                ),
                None,
            )
        return {"promotion": promotion, "heroku_release": target}

    def _rollback_release(self, release: Release) -> HerokuRelease | None:
        app = release.production_app
        if release.rollback_release_id is not None:
            return self.platform.release(app, release.rollback_release_id)
        since = _since(release)
        wanted = f"Rollback to v{release.previous_release_version}"
        return next(
            (
                r
                for r in self.platform.releases(app)
                if r.description.startswith(wanted) and since is not None and r.created_at >= since
            ),
            None,
        )

    def _run_checks(
        self, stage: StageSettings, commit: str, version: int | None, due: list[int]
    ) -> dict[int, CheckResult]:
        """One attempt of each due check of the stage, by its position in the stage's list."""
        target = checks.Target(
            stage=stage.name,
            app=stage.app,
            web_url=self._web_url(stage.app),
            release_version=version,
            commit=commit,
            platform=self.platform,
        )
        return {
            index: checks.run_check(stage.checks[index].kind, stage.checks[index].options, target)
            for index in due
        }

    def _web_url(self, app: str) -> str:
        if app not in self._web_urls:
            self._web_urls[app] = self.platform.web_url(app)
        return self._web_urls[app]

    # --- Act and record ------------------------------------------------------------------------

    def _act(self, release: Release, action: domain.Action) -> Release:
        if isinstance(action, domain.Update):
            if action.silent:
                return self.store.save(replace(release, updated_at=self.clock(), **dict(action.fields)), [])
            return self._record(
                release,
                action.kind,
                action.reason,
                to=action.to,
                fields=dict(action.fields),
                refs=dict(action.refs),
                actor=action.actor,
                detail=action.detail,
            )
        if isinstance(action, domain.LockEnvironment):
            self._lock(release, action)
            return release
        if isinstance(action, domain.PostStatus):
            self.post_status(release, action)
            return release
        if isinstance(action, domain.NotifyChanges):
            return self.notify_changes(release, action)
        handler = {
            domain.DeployToStaging: self._deploy_to_staging,
            domain.OpenReleasePullRequest: self._open_pull_request,
            domain.DeclinePullRequest: self._decline,
            domain.CaptureBackup: self._capture_backup,
            domain.Promote: self._promote,
            domain.RollBack: self._roll_back,
            domain.MergePullRequest: self._merge,
            domain.OpenBackMerge: self._open_back_merge,
        }[type(action)]
        return handler(release, action)  # type: ignore[operator]

    def _record(
        self,
        release: Release,
        kind: str,
        reason: str,
        *,
        to: State | None = None,
        fields: dict[str, Any] | None = None,
        refs: dict[str, str] | None = None,
        actor: str = domain.CONTROLLER,
        keep_reason: bool = False,
        detail: str = "",
    ) -> Release:
        now = self.clock()
        changes = dict(fields or {})
        if not keep_reason:
            changes.setdefault("reason", reason)
        updated = replace(release, state=to or release.state, updated_at=now, **changes)
        assert release.id is not None
        event = Event(
            release_id=release.id,
            at=now,
            kind=kind,
            actor=actor,
            reason=reason,
            state_from=release.state,
            state_to=updated.state,
            refs=dict(refs or {}),
            detail=detail,
        )
        log.info(
            "release %s %s: %s%s",
            release.id,
            kind,
            reason,
            f" ({release.state} -> {updated.state})" if updated.state != release.state else "",
        )
        self.crash_point(f"before:{kind}")
        saved = self.store.save(updated, [event])
        self.crash_point(f"after:{kind}")
        return saved

    def crash_point(self, point: str) -> None:
        """Fault injection (PIPELINE_CRASH_AT): die here, as a killed process would, with no cleanup."""
        if point in self.settings.crash_at:
            sys.stderr.write(f"pipeline: crashing at {point} (PIPELINE_CRASH_AT)\n")
            sys.stderr.flush()
            os._exit(CRASH_EXIT_STATUS)

    def _mark_pending(self, release: Release, action: str, kind: str, note: str, **fields: Any) -> Release:
        """Write-ahead: say what is about to be done before doing it."""
        return self._record(
            release,
            kind,
            note,
            fields={"pending_action": action, "pending_since": self.clock(), **fields},
            keep_reason=True,
        )

    @contextmanager
    def _answered(self, release: Release, action: str) -> Iterator[None]:
        """Around the call that creates something: an error answer (not a timeout, which may still
        be processed) means no need to wait out the grace period before trying again."""
        self._refused.discard((release.id, action))
        try:
            yield
        except ExternalError as exc:
            # An error answer means nothing was made, or what was made is listed already - except
            # a promotion, whose production release appears a little later: only a 4xx proves it.
            if exc.status is not None and (action != "promote" or exc.status < 500):
                self._refused.add((release.id, action))
            raise

    def _fail(self, release: Release, kind: str, why: str, to: State, status_key: str) -> Release:
        """An effect was refused for good: say so on the commit, then record the end."""
        self.post_status(release, domain.PostStatus(status_key, "FAILED", why[:140]))
        fields = {"pending_action": None, "pending_since": None}
        return self._record(release, kind, why, to=to, fields=fields)

    def post_status(self, release: Release, action: domain.PostStatus) -> None:
        stage = self.settings.staging if action.key == domain.STAGING_STATUS else self.settings.production
        try:
            url = action.url or self._web_url(stage.app)
            name = f"{stage.name.capitalize()} ({stage.app})"
            self.source.set_status(release.commit, action.key, action.state, name, action.description, url)
        except Permanent as exc:  # refused for good: feedback is not a step of the path, go on without it
            log.warning("release %s: could not post %s %s: %s", release.id, action.key, action.state, exc)

    def _deploy_to_staging(self, release: Release, action: domain.DeployToStaging) -> Release:
        app = release.staging_app
        try:
            # Nothing is created on Heroku until the build starts: the mark goes just before it.
            tarball = self.source.archive(release.commit)
            source_url = self.platform.upload_source(tarball)
            checksum = "SHA256:" + hashlib.sha256(tarball).hexdigest()
            size = f"{len(tarball) / 1024:.0f} KiB"
            release = self._mark_pending(
                release,
                "deploy",
                "StagingBuildRequested",
                f"building {release.commit[:12]} ({size}) on {app}",
            )
            with self._answered(release, "deploy"):
                build = self.platform.start_build(app, source_url, checksum, release.commit)
        except Permanent as exc:
            why = f"could not build {release.commit[:12]} on {app}: {exc}"
            return self._fail(release, "StagingBuildFailed", why, State.STAGING_FAILED, domain.STAGING_STATUS)
        return self._record(
            release,
            "StagingBuildStarted",
            f"Heroku build {build.id} of {release.commit[:12]}",
            fields={"staging_build_id": build.id, "pending_action": None, "pending_since": None},
            refs={"build": build.id},
        )

    def _open_pull_request(self, release: Release, action: domain.OpenReleasePullRequest) -> Release:
        branch = f"release/{release.id}"
        target = self.settings.source.production_branch
        try:
            self.source.create_branch(branch, release.commit)
            existing = self.source.find_pull_request(branch, target)
            if existing is not None and existing.state == "OPEN":
                pr = existing
            else:
                pinned = replace(release, release_branch=branch)
                description = self._description(pinned)
                pr = self.source.open_pull_request(branch, target, notes.title(pinned), description)
        except Permanent as exc:
            why = f"could not open the release pull request from {branch}: {exc}; a person must fix it"
            if why == release.reason:
                return release
            return self._record(release, "ReleasePullRequestFailed", why)
        return self._record(
            release,
            "ReleasePullRequestOpened",
            f"pull request #{pr.id} from {branch} (pinned at {release.commit[:12]}) into {target}: {pr.url}",
            fields={"release_branch": branch, "pull_request_id": pr.id, "pull_request_url": pr.url},
            refs={"pull_request": str(pr.id), "branch": branch},
        )

    # --- Feedback in Bitbucket ------------------------------------------------------------------

    def notify_changes(self, release: Release, action: domain.NotifyChanges) -> Release:
        """Comment on each merged pull request of the release that its change reached a stage.

        Write-ahead per pull request: its key goes into ``release.feedback`` with a "?" before the
        comment is posted and without once it is. A pass that finds a "?" (it died around the post)
        reads the pull request's comments and posts only when none carries the marker."""
        marker = notes.comment_marker(release, action.stage)
        announced: set[str] = set()
        if action.stage == "staging":  # once on staging is enough, whichever release took it there
            for other in self.store.history(self.settings.name, 200):
                if other.id != release.id:
                    announced.update(k for k in other.feedback if not k.endswith("?"))
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
            text = notes.change_comment(release, change, action.stage, stage.app, version)
            try:
                if f"{key}?" in release.feedback:
                    posted = any(c.text.startswith(marker) for c in self.source.comments(change.id))
                else:
                    release = self._feedback(release, add=f"{key}?")
                    posted = False
                if not posted:
                    self.source.comment(change.id, text)
            except Permanent as exc:  # feedback is not a step of the path: say so and go on
                log.warning(
                    "release %s: could not comment on pull request #%s: %s", release.id, change.id, exc
                )
            release = self._feedback(release, add=key, remove=f"{key}?")
        return release

    def _feedback(self, release: Release, *, add: str, remove: str | None = None) -> Release:
        keys = (*(k for k in release.feedback if k not in (add, remove)), add)
        return self.store.save(replace(release, feedback=keys), [])

    def _description(self, release: Release) -> str:
        """The release pull request's description for the release as it is now."""
        approval = self.settings.approval
        rules = notes.ApprovalRules(
            approvers=tuple(approval.approvers),
            min_approvals=approval.min_approvals,
            max_age=domain.span_text(approval.max_age) if approval.max_age else None,
            authors_may_approve=approval.authors_may_approve,
            digest=domain.approval_digest(self.policy),
        )
        events = self.store.events(release.id) if release.id is not None else []
        since = production_release_before(self.store, self.settings.name, release.id or 0)
        branch = self.settings.source.production_branch
        return notes.pull_request_description(release, rules, events, since, branch)

    def _describe(self, release: Release) -> Release:
        """Keep the open release pull request's description current: rewritten (one PUT) when what
        it says has changed since it was last written."""
        if release.pull_request_id is None or release.state not in DESCRIBED_STATES:
            return release
        text = self._description(release)
        digest = notes.digest(text)
        if digest == release.description_digest:
            return release
        try:
            self.source.update_pull_request(release.pull_request_id, text)
        except Permanent as exc:  # closed meanwhile (merged, declined): nothing left to describe
            log.warning(
                "release %s: could not update pull request #%s: %s", release.id, release.pull_request_id, exc
            )
        return self.store.save(replace(release, description_digest=digest), [])

    def _spend_override(self, release: Release) -> None:
        """A person's override of a window or freeze serves one release once: it is used up when
        the release has started deploying (or ended)."""
        for stage, waiting in (
            (self.settings.staging.name, State.GATED),
            (self.settings.production.name, State.APPROVED),
        ):
            state = self.store.environment(self.settings.name, stage)
            if state.override_release != release.id or release.state == waiting:
                continue
            why = f"release {release.id} started ({release.state}) on the override by {state.override_by}"
            event = Event(release.id, self.clock(), "OverrideUsed", domain.CONTROLLER, why, environment=stage)
            cleared = replace(
                state, override_release=None, override_at=None, override_by="", override_reason=""
            )
            self.store.save_environment(cleared, [event])

    def _lock(self, release: Release, action: domain.LockEnvironment) -> None:
        """Lock the stage (unless it is locked already): nothing deploys there until a person
        unlocks it, so the controller does not undo a rollback by promoting again."""
        state = self.store.environment(self.settings.name, action.stage)
        if state.locked:
            return
        now = self.clock()
        why = f"release {release.id} was rolled back: {action.reason}"
        event = Event(release.id, now, "EnvironmentLocked", domain.CONTROLLER, why, environment=action.stage)
        self.store.save_environment(
            replace(state, locked_at=now, locked_by=domain.CONTROLLER, lock_reason=why), [event]
        )
        log.warning("%s locked: %s", action.stage, why)

    def _decline(self, release: Release, action: domain.DeclinePullRequest) -> Release:
        if release.pull_request_id is None:
            return release
        try:
            self.source.decline_pull_request(release.pull_request_id, action.comment)
        except Permanent as exc:
            return self._record(release, "ReleasePullRequestNotDeclined", str(exc), keep_reason=True)
        return self._record(
            release,
            "ReleasePullRequestDeclined",
            action.comment,
            refs={"pull_request": str(release.pull_request_id)},
            keep_reason=True,
        )

    def _capture_backup(self, release: Release, action: domain.CaptureBackup) -> Release:
        app = release.production_app
        release = self._mark_pending(release, "backup", "BackupRequested", f"capturing a backup of {app}")
        try:
            with self._answered(release, "backup"):
                backup = self.backups.capture(app)
        except Permanent as exc:
            why = f"could not capture a backup of {app}: {exc}; production was not changed"
            return self._fail(release, "BackupFailed", why, State.PROMOTION_FAILED, domain.PRODUCTION_STATUS)
        return self._record(
            release,
            "BackupCaptureStarted",
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

    def _promote(self, release: Release, action: domain.Promote) -> Release:
        prod = self.settings.production
        live = self.platform.current_release(prod.app)
        release = self._mark_pending(
            release,
            "promote",
            "PromotionRequested",
            f"promoting {release.staging_app} v{release.staging_release_version} to {prod.app} "
            f"(now v{live.version if live else '-'})",
            # Recorded once: a second try must not take the half-promoted release for the previous one.
            previous_release_id=release.previous_release_id or (live.id if live else None),
            previous_release_version=release.previous_release_version or (live.version if live else None),
        )
        try:
            assert release.staging_release_id is not None and prod.pipeline is not None
            promotion = self.platform.promote(
                prod.pipeline, release.staging_app, release.staging_release_id, prod.app
            )
        except Permanent as exc:
            why = f"could not promote to {prod.app}: {exc}; production was not changed"
            return self._fail(
                release, "PromotionFailed", why, State.PROMOTION_FAILED, domain.PRODUCTION_STATUS
            )
        return self._record(
            release,
            "PromotionStarted",
            f"Heroku promotion {promotion.id}",
            fields={"promotion_id": promotion.id},
            refs={"promotion": promotion.id},
            keep_reason=True,
        )

    def _roll_back(self, release: Release, action: domain.RollBack) -> Release:
        app = release.production_app
        release = self._mark_pending(
            release,
            "rollback",
            "RollbackRequested",
            f"rolling {app} back to v{action.version}: {action.why}",
            reason=action.why,
        )
        try:
            with self._answered(release, "rollback"):
                rollback = self.platform.rollback(app, action.release_id)
        except Permanent as exc:
            why = (
                f"{action.why}; the rollback to v{action.version} failed too: {exc}. Production runs "
                f"v{release.production_release_version}: roll back by hand "
                f"(`heroku releases:rollback v{action.version} -a {app}`)"
            )
            return self._fail(
                release, "RollbackFailed", why, State.PROMOTION_FAILED, domain.PRODUCTION_STATUS
            )
        return self._record(
            release,
            "RollbackStarted",
            f"{app} v{rollback.version} runs v{action.version}'s slug; verifying it",
            fields={
                "rollback_release_id": rollback.id,
                "rollback_release_version": rollback.version,
                "pending_action": None,
                "pending_since": None,
                "verification_started_at": self.clock(),
                "check_progress": (),
            },
            refs={"release": rollback.id},
            keep_reason=True,
        )

    def _open_back_merge(self, release: Release, action: domain.OpenBackMerge) -> Release:
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
        release = self.store.save(replace(release, feedback=(*release.feedback, "backmerge")), [])
        return self._record(release, "BackMergeRequested", said, refs=refs, keep_reason=True)

    def _merge(self, release: Release, action: domain.MergePullRequest) -> Release:
        release = self._describe(release)  # its last word before it closes
        assert release.pull_request_id is not None
        message = f"Release {release.id}: {release.commit[:12]} (merged by the release controller)"
        try:
            merge_commit = self.source.merge_pull_request(release.pull_request_id, message)
        except Permanent as exc:
            why = (
                f"could not merge release pull request #{release.pull_request_id}: {exc}; "
                "production runs the release: merge it by hand"
            )
            return self._record(release, "ReleaseMergeFailed", why, keep_reason=True)
        return self._record(
            release,
            "ReleasePullRequestMerged",
            f"#{release.pull_request_id} merged into {self.settings.source.production_branch}",
            refs={"pull_request": str(release.pull_request_id), "commit": merge_commit},
            keep_reason=True,
        )


def policy_of(
    settings: Settings, controller_account: Any = None, approvers: frozenset[str] | None = None
) -> domain.Policy:
    """The domain's rules, from the settings; ``approvers``: their pinned account ids and uuids
    (else the names as written)."""
    backups = settings.production.backups
    return domain.Policy(
        required_builds=tuple(settings.source.required_builds),
        approvers=approvers if approvers is not None else frozenset(settings.approval.approvers),
        approver_names=tuple(settings.approval.approvers),
        min_approvals=settings.approval.min_approvals,
        controller_account=controller_account,
        approval_max_age=settings.approval.max_age,
        authors_may_approve=settings.approval.authors_may_approve,
        unlinked_authors=settings.approval.unlinked_authors,
        staging=verification_of(settings.staging),
        production=verification_of(settings.production),
        capture_backup=backups.capture_before_promotion if backups else False,
        backup_max_age=backups.max_age if backups else timedelta(hours=26),
        staging_name=settings.staging.name,
        production_name=settings.production.name,
        source_branch=settings.source.branch,
        production_branch=settings.source.production_branch,
        windows={s.name: s.windows.windows() for s in settings.stages if s.windows is not None},
    )


def verification_of(stage: StageSettings) -> domain.Verification:
    """Each configured check of the stage with its own rule: retries, interval, backoff, soak."""
    return domain.Verification(
        checks=tuple(
            domain.CheckRule(
                name=check_label(spec),
                retries=spec.options.retries,
                interval=spec.options.interval,
                backoff=spec.options.backoff,
                soak=spec.options.soak,
            )
            for spec in stage.checks
        )
    )


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


def contains(newer: Release, older: Release) -> bool:
    """True when ``newer`` carries ``older``'s change: the same branch (whose history is linear), or
    ``older``'s commit among ``newer``'s."""
    return newer.branch == older.branch or any(c.hash == older.commit for c in newer.commits)


def check_label(spec: CheckSpec) -> str:
    """A configured check's name for people: the plugin, and its path when it has one."""
    path = getattr(spec.options, "path", None)
    return f"{spec.kind} {path}" if isinstance(path, str) else spec.kind


def due_checks(stage: StageSettings, progress: tuple[CheckProgress, ...], now: datetime) -> list[int]:
    """The positions of the stage's checks to try now: not done, and their next try has come."""
    if len(progress) != len(stage.checks):
        return list(range(len(stage.checks)))
    return [i for i, p in enumerate(progress) if not p.done and (p.next_at is None or p.next_at <= now)]


def _dead_here(holder: str) -> bool:
    """True when ``holder`` ("host:pid:nonce") names a process of this host that has exited."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _since(release: Release) -> datetime | None:
    return release.pending_since - CLOCK_SKEW if release.pending_since else None
