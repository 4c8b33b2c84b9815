"""Rollbacks people ask for (``pipeline rollback ENV``): planned, requested, and carried out.

- ``plan`` reads what runs on the stage and what a rollback would take out (the Heroku releases
  after the target, the controller's releases among them and their commits), and says what needs
  ``--force``: a target that never passed verification there, or a release taken out whose release
  phase migrated the database (its output matches ``rollback.migration_pattern``, or is gone).
- ``request`` records the rollback under the pass lock (so no pass starts a deployment beside it),
  refusing while something deploys to the stage, and locks the stage so the controller does not
  promote again by itself.
- the controller's passes carry it out (``pipeline.controller.rollbacks``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import Any

from pipeline.config import StageSettings
from pipeline.controller import Controller
from pipeline.errors import BadInput, ExternalError, Refused
from pipeline.model import (
    Commit,
    Event,
    EventKind,
    HerokuRelease,
    Release,
    Rollback,
    RollbackState,
    TakenOut,
)

log = logging.getLogger("pipeline.rollbacks")

ROUNDS = 8


@dataclass(frozen=True)
class RollbackPlan:
    """What ``pipeline rollback ENV [--to V]`` would do, before anyone confirms it."""

    stage: str
    app: str
    live: HerokuRelease
    target: HerokuRelease
    taken_out: tuple[TakenOut, ...]
    commits: tuple[Commit, ...]  # the commits taken out, when Bitbucket can tell
    needs_force: tuple[str, ...]  # why --force is needed (nothing: it is not)
    live_release: Release | None
    target_release: Release | None

    def lines(self) -> list[str]:
        """The plan for people: from what to what, what it takes out, what needs --force."""
        live, target = self.live_release, self.target_release
        lines = [
            f"Rolling {self.app} ({self.stage}) back",
            f"  from v{self.live.version}: {self.live.description}"
            + (f" (release {live.id} {live.commit[:12]})" if live else ""),
            f"  to   v{self.target.version}: {self.target.description}"
            + (f" (release {target.id} {target.commit[:12]})" if target else ""),
            "Taken out:",
        ]
        for t in self.taken_out:
            ours = (
                f"release {t.release_id} {t.commit[:12]}"
                if t.release_id and t.commit
                else "not a release of the controller"
            )
            lines.append(f"  v{t.version} {t.description} ({ours})")
        if self.commits:
            lines.append(f"Commits taken out ({len(self.commits)}):")
            lines += [
                f"  {c.hash[:12]} {(c.message.splitlines() or [''])[0]} ({c.author_raw})"
                for c in self.commits
            ]
        lines += [f"Needs --force: {why}" for why in self.needs_force]
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.stage,
            "app": self.app,
            "live": {"version": self.live.version, "description": self.live.description},
            "target": {"version": self.target.version, "description": self.target.description},
            "releases_taken_out": [
                {
                    "version": t.version,
                    "release": t.release_id,
                    "commit": t.commit,
                    "description": t.description,
                }
                for t in self.taken_out
            ],
            "commits_taken_out": [
                {"hash": c.hash, "message": (c.message.splitlines() or [""])[0], "author": c.author_raw}
                for c in self.commits
            ],
            "needs_force": list(self.needs_force),
        }


def plan(controller: Controller, stage: StageSettings, to: int | None) -> RollbackPlan:
    """What a rollback of ``stage`` to version ``to`` (default: the newest earlier release running
    other code) would take out, and what of it needs ``--force``. BadInput for a version that is no
    release of the app, not earlier, or not one that can run again; Refused when nothing can be
    rolled back to."""
    platform, store, name = controller.platform, controller.store, controller.settings.name
    app = stage.app
    busy = controller.busy_with(stage.name)
    if busy is not None:
        raise Refused(f"{stage.name} is busy with {busy}: a rollback waits until it is done")
    live = platform.current_release(app)
    if live is None:
        raise Refused(f"nothing runs on {app}: there is nothing to roll back")
    releases = platform.releases(app, limit=500)
    target = _target(releases, live, to, app)
    history = store.history(name, 500)
    by_slug = {r.staging_slug_id: r for r in reversed(history) if r.staging_slug_id}
    taken: list[TakenOut] = []
    for r in releases:
        if target.version < r.version <= live.version and r.slug_id and r.slug_id != target.slug_id:
            ours = by_slug.get(r.slug_id)
            taken.append(
                TakenOut(r.version, ours.id if ours else None, ours.commit if ours else None, r.description)
            )
    live_release = by_slug.get(live.slug_id or "")
    target_release = by_slug.get(target.slug_id or "")
    commits: tuple[Commit, ...] = ()
    if live_release is not None and target_release is not None and live_release.id != target_release.id:
        try:
            commits = tuple(controller.source.commits_between(live_release.commit, target_release.commit))
        except ExternalError as exc:  # the plan stands without them; say so in the log
            log.warning("could not list the commits taken out: %s", exc)
    force = []
    if not _verified(controller, stage, target, history):
        slug = (target.slug_id or "")[:8]
        force.append(
            f"v{target.version} never passed verification on {stage.name}: no release the controller "
            f"verified there ran its code (slug {slug})"
        )
    force.extend(_migrations(controller, stage, releases, target, live, history))
    return RollbackPlan(
        stage.name, app, live, target, tuple(taken), commits, tuple(force), live_release, target_release
    )


def request(controller: Controller, the_plan: RollbackPlan, reason: str, force: bool, actor: str) -> Rollback:
    """Record the rollback (the controller's passes carry it out) and lock the stage, under the pass
    lock. Refused when it needs --force and has not got it, or while something deploys to the stage."""
    if the_plan.needs_force and not force:
        listed = "; ".join(the_plan.needs_force)
        raise Refused(f"this rollback needs --force: {listed}")
    store, name, stage = controller.store, controller.settings.name, the_plan.stage
    with controller.pass_lock():
        busy = controller.busy_with(stage)
        if busy is not None:
            raise Refused(f"{stage} is busy with {busy}: a rollback waits until it is done")
        live = controller.platform.current_release(the_plan.app)
        if live is None or live.id != the_plan.live.id:
            raise Refused(
                f"{the_plan.app} changed since the plan was made "
                f"(now v{live.version if live else '-'}): look again"
            )
        now = controller.clock()
        forced = the_plan.needs_force if force else ()
        rollback = Rollback(
            pipeline=name,
            environment=stage,
            app=the_plan.app,
            state=RollbackState.REQUESTED,
            requested_at=now,
            requested_by=actor,
            reason=reason,
            from_release_id=the_plan.live.id,
            from_version=the_plan.live.version,
            to_release_id=the_plan.target.id,
            to_version=the_plan.target.version,
            to_slug_id=the_plan.target.slug_id,
            taken_out=the_plan.taken_out,
            forced=forced,
            updated_at=now,
        )
        about = the_plan.live_release.id if the_plan.live_release else None
        what = (
            f"roll {the_plan.app} back from v{the_plan.live.version} to v{the_plan.target.version}: {reason}"
        )
        if forced:
            what += f" (forced past: {'; '.join(forced)})"
        stored = store.add_rollback(rollback, [Event(about, now, EventKind.RollbackRequested, actor, what)])
        state = store.environment(name, stage)
        why = f"rollback {stored.id} by {actor}: {reason}"
        if not state.locked:
            locked = replace(state, locked_at=now, locked_by=actor, lock_reason=why)
            store.save_environment(
                locked, [Event(about, now, EventKind.EnvironmentLocked, actor, why, environment=stage)]
            )
        return stored


def _target(releases: list[HerokuRelease], live: HerokuRelease, to: int | None, app: str) -> HerokuRelease:
    if to is not None:
        found = next((r for r in releases if r.version == to), None)
        if found is None:
            versions = [r.version for r in releases]
            known = f"v{min(versions)}..v{max(versions)}" if versions else "none"
            raise BadInput("--to", f"v{to} is no release of {app} (its releases: {known})")
        if found.version >= live.version:
            raise BadInput(
                "--to", f"v{to} is not earlier than v{live.version}, which runs now: a rollback goes back"
            )
        if found.status != "succeeded" or not found.slug_id:
            raise BadInput(
                "--to",
                f"v{to} cannot run again ({found.status}{', no slug' if not found.slug_id else ''}): "
                "choose a release that deployed code",
            )
        if found.slug_id == live.slug_id:
            raise BadInput("--to", f"v{to} runs the same code as v{live.version}: nothing would change")
        return found
    earlier = next(
        (
            r
            for r in releases
            if r.version < live.version
            and r.status == "succeeded"
            and r.slug_id
            and r.slug_id != live.slug_id
        ),
        None,
    )
    if earlier is None:
        raise Refused(f"no earlier release of {app} runs other code: there is nothing to roll back to")
    return earlier


def _verified(
    controller: Controller, stage: StageSettings, target: HerokuRelease, history: list[Release]
) -> bool:
    """Did the code of ``target`` (its slug) pass verification on ``stage``? A release verified
    there ran it (production: released; staging: verified on staging), or a rollback to it was."""
    slug = target.slug_id
    if stage.name == controller.settings.production.name:
        if any(r.staging_slug_id == slug and r.released_at is not None for r in history):
            return True
    elif any(r.staging_slug_id == slug and r.staging_verified_at is not None for r in history):
        return True
    return any(
        r.to_slug_id == slug and r.environment == stage.name and r.state == RollbackState.VERIFIED
        for r in controller.store.rollbacks(controller.settings.name, limit=500)
    )


def _migrations(
    controller: Controller,
    stage: StageSettings,
    releases: list[HerokuRelease],
    target: HerokuRelease,
    live: HerokuRelease,
    history: list[Release],
) -> list[str]:
    """Why the releases taken out may have changed the database schema in their release phase."""
    pattern = re.compile(stage.rollback.migration_pattern)
    found = []
    for r in releases:
        if not (target.version < r.version <= live.version) or not r.output_stream_url:
            continue
        try:
            output = controller.platform.release_output(r)
        except ExternalError:
            output = ""
        if not output:
            output = _kept_output(controller, stage, r, history)
        if not output:
            found.append(
                f"v{r.version} ran a release phase whose output is no longer available: it may have "
                "migrated the database"
            )
            continue
        hit = pattern.search(output)
        if hit is not None:
            start = output.rfind("\n", 0, hit.start()) + 1
            end = output.find("\n", hit.end())
            line = output[start : end if end >= 0 else len(output)].strip()[:160]
            found.append(
                f"v{r.version} ran a release phase that migrated the database ({line!r}): rolling the "
                "code back leaves the schema as it is"
            )
    return found


def _kept_output(
    controller: Controller, stage: StageSettings, release: HerokuRelease, history: list[Release]
) -> str:
    """The release-phase output the history kept for a release of the stage (a release_phase check)."""
    production = stage.name == controller.settings.production.name
    ours = next(
        (
            r
            for r in history
            if release.version == (r.production_release_version if production else r.staging_release_version)
        ),
        None,
    )
    if ours is None or ours.id is None:
        return ""
    kept = [e.detail for e in controller.store.events(ours.id) if e.kind.endswith("CheckPassed") and e.detail]
    return "\n".join(kept)
