"""The use cases the CLI, the scheduler and (later) the web app and runbooks share.

Nobody else calls the adapters: a command asks a service, the service asks the controller, the
store or a port, and answers in plain JSON-ready values.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pipeline import domain, notes, restore, rollbacks
from pipeline.config import Settings, StageSettings
from pipeline.controller import Controller, PassReport, production_release_before, utcnow
from pipeline.errors import BadInput, ExternalError, NotFound, Refused
from pipeline.model import EnvironmentState, Event, HerokuRelease, Release, Rollback, State, Webhook
from pipeline.ports import Platform, ReleaseStore, SourceControl
from pipeline.services.environments import frozen_text, given_reason, parse_until
from pipeline.services.passes import SettleTimeout
from pipeline.services.rolling_back import _version
from pipeline.services.views import _iso, event_json, release_detail, release_summary


@dataclass
class Services:
    settings: Settings
    store: ReleaseStore
    controller: Controller | None = None
    platform: Platform | None = None
    source: SourceControl | None = None
    clock: Callable[[], datetime] = utcnow

    # --- Passes --------------------------------------------------------------------------------

    def tick(self, detect: bool | None = True) -> PassReport:
        """One pass of the controller (``detect``: see ``Controller.tick``)."""
        assert self.controller is not None, "built without adapters: use bootstrap.services(settings)"
        return self.controller.tick(detect=detect)

    def settle(self, timeout: float, on_pass: Callable[[PassReport], None] | None = None) -> list[PassReport]:
        """Run passes until nothing can move without a person or the clock; SettleTimeout after
        ``timeout`` seconds. Between passes it sleeps until the next check is due (at most 1 s).
        The first pass always looks at the watched branch."""
        deadline = time.monotonic() + timeout
        reports: list[PassReport] = []
        first = True
        overtime = False
        while True:
            report = self.tick(detect=True if first else None)
            first = False
            reports.append(report)
            if on_pass:
                on_pass(report)
            if not report.moving and not report.skipped:
                return reports
            if time.monotonic() > deadline and (overtime or not report.moved_any):
                # Out of time (one pass more for a release that just moved into a wait on a
                # person): name what is still moving by itself.
                moving = [r for r in report.releases if r.moved or (r.wait and r.wait.on.moves_by_itself)]
                waiting = "; ".join(
                    f"release {r.release_id} {r.state}: {r.wait.detail}" for r in moving if r.wait
                )
                raise SettleTimeout(f"still moving after {timeout:g}s: {waiting or report.skipped}")
            overtime = time.monotonic() > deadline
            time.sleep(1.0 if report.skipped else report.pause(self.clock()))

    # --- Environments: freezes, locks, overrides ------------------------------------------------

    def stage(self, name: str) -> StageSettings:
        """The stage called ``name``; BadInput naming the known ones otherwise."""
        for stage in self.settings.stages:
            if stage.name == name:
                return stage
        known = ", ".join(s.name for s in self.settings.stages)
        raise BadInput("ENV", f"unknown environment {name!r}: the environments are {known}")

    def freeze(self, name: str, reason: str, until: str | None = None) -> EnvironmentState:
        """Freeze a stage: nothing starts deploying to it until it is unfrozen or ``until`` (a
        duration such as 2h, or a time) passes. Freezing again replaces the reason and end."""
        stage, why = self.stage(name), given_reason(reason)
        now = self.clock()
        ends = parse_until(until, now, stage) if until else None
        state = self.store.environment(self.settings.name, stage.name)
        frozen = replace(
            state, frozen_at=now, frozen_by=self.settings.actor, freeze_reason=why, frozen_until=ends
        )
        what = f"frozen until {_iso(ends)}" if ends else "frozen until unfrozen"
        kind = "EnvironmentFreezeChanged" if state.frozen(now) else "EnvironmentFrozen"
        event = Event(
            None, now, kind, self.settings.actor, f"{stage.name} {what}: {why}", environment=stage.name
        )
        return self.store.save_environment(frozen, [event])

    def unfreeze(self, name: str, reason: str = "") -> EnvironmentState | None:
        """Lift a stage's freeze; None (and nothing recorded) when it was not frozen."""
        stage, now = self.stage(name), self.clock()
        state = self.store.environment(self.settings.name, stage.name)
        if not state.frozen(now):
            return None
        why = reason.strip() or "no reason given"
        lifted = replace(state, frozen_at=None, frozen_by="", freeze_reason="", frozen_until=None)
        event = Event(
            None,
            now,
            "EnvironmentUnfrozen",
            self.settings.actor,
            f"{stage.name} unfrozen: {why}",
            environment=stage.name,
        )
        return self.store.save_environment(lifted, [event])

    def unlock(self, name: str, reason: str) -> EnvironmentState | None:
        """Clear a stage's lock (set by a rollback); None (nothing recorded) when it was not locked."""
        stage, why = self.stage(name), given_reason(reason)
        state = self.store.environment(self.settings.name, stage.name)
        if not state.locked:
            return None
        now = self.clock()
        was = f"locked since {_iso(state.locked_at)} by {state.locked_by}: {state.lock_reason}"
        said = f"{stage.name} unlocked ({was}): {why}"
        cleared = replace(state, locked_at=None, locked_by="", lock_reason="")
        event = Event(None, now, "EnvironmentUnlocked", self.settings.actor, said, environment=stage.name)
        return self.store.save_environment(cleared, [event])

    def promote_now(self, name: str, reason: str) -> Release:
        """Let the release waiting for stage ``name`` start now, outside its window or freeze (a
        one-time override, recorded as such), then run a pass. The approval rules still hold; a
        lock does not give way (unlock first). Refused when nothing waits for the stage."""
        stage, why = self.stage(name), given_reason(reason)
        waiting_in = State.GATED if stage.name == self.settings.staging.name else State.APPROVED
        state = self.store.environment(self.settings.name, stage.name)
        if state.locked:
            raise Refused(
                f"{stage.name} is locked since {_iso(state.locked_at)} by {state.locked_by}: "
                f"{state.lock_reason}; "
                f"`pipeline unlock {stage.name} --reason ...` first"
            )
        waiting = [r for r in self.store.active(self.settings.name) if r.state == waiting_in]
        if not waiting:
            what = "approved" if waiting_in == State.APPROVED else "gated (builds green)"
            raise Refused(
                f"no release waits to go to {stage.name} (none is {what}): "
                "`pipeline status` says what waits on what"
            )
        release = waiting[0]  # newest first: the one that would go
        now = self.clock()
        granted = replace(
            state,
            override_release=release.id,
            override_at=now,
            override_by=self.settings.actor,
            override_reason=why,
        )
        said = f"release {release.id} may start deploying to {stage.name} now, window and freeze aside: {why}"
        event = Event(release.id, now, "OverrideGranted", self.settings.actor, said, environment=stage.name)
        self.store.save_environment(granted, [event])
        self.tick(detect=False)
        return self.store.get(release.id or 0)

    # --- Hotfixes ------------------------------------------------------------------------------

    def start_hotfix(self, branch: str) -> Release:
        """Take the head of a hotfix branch (``source.hotfix_branches``) through staging and approval
        to production on its own, without what else is on the watched branch. BadInput for a branch
        that is no hotfix branch or does not exist; Refused when it is not based on production's
        branch (it would take production's other commits out) or is a release already."""
        assert self.controller is not None and self.source is not None, "use bootstrap.services(settings)"
        src = self.settings.source
        name = branch.strip()
        if not fnmatch.fnmatchcase(name, src.hotfix_branches) or name in (src.branch, src.production_branch):
            raise BadInput(
                "BRANCH", f"{name!r} is not a hotfix branch (source.hotfix_branches: {src.hotfix_branches})"
            )
        head = self.source.branch_head(name)
        if head is None:
            raise BadInput("BRANCH", f"there is no branch {name!r} in {src.workspace}/{src.repository}")
        existing = self.store.by_commit(self.settings.name, head)
        if existing is not None:
            raise Refused(f"{name} at {head[:12]} is release {existing.id} already ({existing.state})")
        production_head = self.source.branch_head(src.production_branch)
        if production_head is not None:
            lacking = [
                c for c in self.source.commits_between(production_head, head, limit=20) if len(c.parents) <= 1
            ]
            if lacking:
                first = lacking[0]
                raise Refused(
                    f"{name} is not based on {src.production_branch}: it lacks {first.hash[:12]} "
                    f"({(first.message.splitlines() or [''])[0][:60]}) and maybe more; branch it from "
                    f"{src.production_branch}, or merge {src.production_branch} into it"
                )
        release = self.controller.candidate(name, head, production_head)
        if release is None:
            raise Refused(f"{name} at {head[:12]} is already on {src.production_branch}: nothing to release")
        commits = release.commits
        develop_head = self.source.branch_head(src.branch)
        unreleased = (
            {c.hash for c in self.source.commits_between(develop_head, production_head)}
            if develop_head
            else set()
        )
        carried = [c for c in commits if c.hash in unreleased]
        if carried:
            first = carried[0]
            raise Refused(
                f"{name} carries {len(carried)} commit(s) of {src.branch} that production does not have "
                f"({first.hash[:12]} {(first.message.splitlines() or [''])[0][:60]}...): branch it from "
                f"{src.production_branch}, so the hotfix takes only the fix"
            )
        why = (
            f"hotfix from {name} at {head[:12]}: {len(commits)} commit(s) not on {src.production_branch}; "
            "it goes through staging and approval on its own"
        )
        stored = self.store.add(release, "HotfixStarted", why, self.settings.actor)
        self.tick(detect=False)
        return self.store.get(stored.id or 0)

    # --- Backups: the restore drill --------------------------------------------------------------

    def restore_drill(
        self, context: restore.Shell, backup: str | None = None, *, keep: bool = False
    ) -> restore.RestoreReport:
        """Restore a production backup (``backup``: its name b012, number or uuid; default the
        newest completed one) into a scratch database and check it (the tables come back with rows;
        every ``backups.restore_checks`` query holds), through ``context``: ``invoke.Context()`` on
        this machine, or a ``fabric.Connection`` to a verification host. The outcome goes into the
        history; the database is dropped unless ``keep``."""
        assert self.controller is not None, "built without adapters: use bootstrap.services(settings)"
        production = self.settings.production
        store = self.controller.backups
        try:
            chosen = store.backup(production.app, backup) if backup else None
        except NotFound:
            raise BadInput(
                "--backup", f"{backup!r} is no backup of {production.app} (`heroku pg:backups` lists them)"
            ) from None
        if chosen is None:
            completed = [b for b in store.backups(production.app) if b.status == "completed"]
            if not completed:
                raise Refused(f"{production.app} has no completed backup to restore")
            chosen = completed[0]
        elif chosen.status != "completed":
            raise BadInput(
                "--backup", f"{chosen.name} is {chosen.status}: only a completed backup can be restored"
            )
        url = store.public_url(production.app, chosen.id)
        checks = production.backups.restore_checks if production.backups else ()
        report = restore.restore_drill(
            context, url, server=self.settings.restore_server.get_secret_value(), checks=checks, keep=keep
        )
        now = self.clock()
        kind = "BackupRestoreVerified" if report.ok else "BackupRestoreFailed"
        detail = json.dumps(
            {
                "backup": {"id": chosen.id, "name": chosen.name, "finished_at": _iso(chosen.finished_at)},
                "where": report.where,
                "tables": dict(report.tables),
                "checks": [{"query": c.query, "ok": c.ok, "returned": c.returned} for c in report.checks],
                "problems": list(report.problems),
            },
            indent=2,
        )
        event = Event(
            None,
            now,
            kind,
            self.settings.actor,
            f"{chosen.name}: {report.summary()}",
            refs={"backup": chosen.id},
            detail=detail,
            environment=production.name,
        )
        self.store.note(self.settings.name, [event])
        return report

    # --- Credentials -------------------------------------------------------------------------------

    def rotate_credentials(self, webhook_url: str | None = None) -> list[str]:
        """After new credentials were put in the environment: check that each one works and reaches
        what the controller needs (the repository, both apps, the workspace members who approve), and
        give Bitbucket the webhook secret again; say what was checked. Raises ExternalError naming the
        credential that is refused. Nothing is printed or recorded of the secrets themselves."""
        assert self.controller is not None and self.source is not None and self.platform is not None
        said = [
            f"BITBUCKET_TOKEN works: account {self.source.check_access()} reads "
            f"{self.settings.source.workspace}/{self.settings.source.repository}",
            f"HEROKU_API_KEY works: account {self.platform.check_access()}",
        ]
        for stage in self.settings.stages:
            live = self.platform.current_release(stage.app)
            said.append(f"HEROKU_API_KEY reads {stage.app} (v{live.version if live else '-'})")
        if self.settings.webhooks is not None and self.settings.webhook_secret is not None:
            hooks = self.settings.webhooks
            url = webhook_url or hooks.public_url or f"http://{hooks.host}:{hooks.port}/webhooks/bitbucket"
            hook, outcome = self.install_webhook(url)
            said.append(f"BITBUCKET_WEBHOOK_SECRET given to the webhook to {hook.url} ({outcome})")
        event = Event(None, self.clock(), "CredentialsRotated", self.settings.actor, "; ".join(said))
        self.store.note(self.settings.name, [event])
        return said

    # --- Rollbacks -----------------------------------------------------------------------------

    def plan_rollback(self, name: str, to: str | None = None) -> rollbacks.RollbackPlan:
        """What rolling stage ``name`` back (to version ``to``: "12" or "v12"; default the newest
        earlier release running other code) would take out, and what of it needs --force."""
        assert self.controller is not None, "built without adapters: use bootstrap.services(settings)"
        stage = self.stage(name)
        version = _version(to) if to is not None else None
        return rollbacks.plan(self.controller, stage, version)

    def request_rollback(
        self, the_plan: rollbacks.RollbackPlan, reason: str, force: bool = False
    ) -> Rollback:
        """Record the rollback of a plan and lock its stage (the controller's passes carry it out);
        Refused when it needs --force, or while something deploys to the stage."""
        assert self.controller is not None, "built without adapters: use bootstrap.services(settings)"
        return rollbacks.request(self.controller, the_plan, given_reason(reason), force, self.settings.actor)

    def roll_back(
        self,
        name: str,
        to: str | None,
        reason: str,
        *,
        force: bool,
        confirm: Callable[[rollbacks.RollbackPlan], bool],
        say: Callable[[str], None],
        timeout: float = 600,
    ) -> Rollback | None:
        """All of `pipeline rollback` (and its runbook): say the plan; refuse one that needs --force
        without it; ``confirm`` (None when declined: nothing changed); record it (locking ``name``);
        carry it out, saying each step and the outcome. BadInput, Refused and SettleTimeout as the
        steps raise them."""
        given_reason(reason)  # an empty reason: refused before anything is looked at
        plan = self.plan_rollback(name, to)
        for line in plan.lines():
            say(line)
        if plan.needs_force and not force:
            raise Refused(
                "this rollback needs --force: " + "; ".join(plan.needs_force) + ". Nothing was changed."
            )
        if not confirm(plan):
            say("Nothing was changed.")
            return None
        asked = self.request_rollback(plan, reason, force)
        say(f"Rollback {asked.id} recorded; {name} is locked. Rolling back...")
        said: set[str] = set()

        def show(r: Rollback) -> None:
            line = f"  rollback {r.id} {r.state}" + (f": {r.outcome}" if r.outcome else "")
            if line not in said:
                said.add(line)
                say(line)

        done = self.carry_out(asked.id or 0, timeout, on_pass=show)
        say(done.outcome)
        return done

    def carry_out(
        self, rollback_id: int, timeout: float = 600, on_pass: Callable[[Rollback], None] | None = None
    ) -> Rollback:
        """Run passes until the rollback ends (a ``serve`` running beside may carry it out instead:
        then this only watches); SettleTimeout after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.tick(detect=False)
            rollback = self.store.rollback(rollback_id)
            if on_pass:
                on_pass(rollback)
            if rollback.state.is_final:
                return rollback
            if time.monotonic() > deadline:
                raise SettleTimeout(f"rollback {rollback_id} still {rollback.state} after {timeout:g}s")
            time.sleep(1.0 if report.skipped else report.pause(self.clock()))

    def log(self, environment: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The history of releases and environments, newest first (one environment's only, if named)."""
        name = self.stage(environment).name if environment else None
        return [event_json(e) for e in self.store.log(self.settings.name, name, limit)]

    # --- Webhooks ------------------------------------------------------------------------------

    def install_webhook(self, url: str) -> tuple[Webhook, str]:
        """Register (or update) the repository's webhook to ``url`` with the configured secret and
        the events that can move a release; ("created" | "updated"). Idempotent: one hook per URL."""
        from pipeline.web.webhooks import USED_EVENTS

        assert self.source is not None, "built without adapters: use bootstrap.services(settings)"
        assert self.settings.webhook_secret is not None, "the CLI checks the secret first"
        description = f"release controller: pipeline {self.settings.name}"
        return self.source.install_webhook(
            url, self.settings.webhook_secret.get_secret_value(), USED_EVENTS, description
        )

    # --- Reading -------------------------------------------------------------------------------

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        """Releases newest first, in the history JSON contract (see README)."""
        return [release_summary(r) for r in self.store.history(self.settings.name, limit)]

    def show(self, release_id: int) -> dict[str, Any]:
        """One release, everything known about it, and every event oldest first."""
        release = self.store.get(release_id)
        since = production_release_before(self.store, self.settings.name, release_id)
        detail = release_detail(release)
        detail["notes"] = {
            "since": {"release": since.id, "commit": since.commit} if since else None,
            "base_commit": release.base_commit,
            "production_branch": self.settings.source.production_branch,
            "text": notes.release_notes(release, since, self.settings.source.production_branch),
        }
        return detail | {"events": [event_json(e) for e in self.store.events(release_id)]}

    def status(self) -> dict[str, Any]:
        """Per environment what runs now, and which releases wait on what."""
        environments = []
        for stage in self.settings.stages:
            environments.append(self._environment(stage.name, stage.app))
        waiting = [
            {
                "id": r.id,
                "commit": r.commit,
                "state": str(r.state),
                "since": _iso(r.updated_at),
                "waiting_on": r.reason,
                "pull_request": r.pull_request_url,
            }
            for r in self.store.active(self.settings.name)
        ]
        rolling = [
            {
                "id": r.id,
                "environment": r.environment,
                "state": str(r.state),
                "from": r.from_version,
                "to": r.to_version,
                "by": r.requested_by,
                "reason": r.reason,
            }
            for r in self.store.rollbacks(self.settings.name, active=True)
        ]
        return {
            "pipeline": self.settings.name,
            "environments": environments,
            "releases": waiting,
            "rollbacks": rolling,
        }

    def _environment(self, stage: str, app: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"stage": stage, "app": app} | self._decided(stage)
        live: HerokuRelease | None = None
        if self.platform is not None:
            try:
                live = self.platform.current_release(app)
            except ExternalError as exc:
                entry["error"] = str(exc)
        if live is None:
            entry["release"] = None
            return entry
        ours = self._release_running(live)
        entry["release"] = {
            "version": live.version,
            "since": _iso(live.created_at),
            "description": live.description,
            "commit": ours.commit if ours else None,
            "release_id": ours.id if ours else None,
            "approved_by": [a.user.username for a in ours.counted_approvals] if ours else [],
        }
        return entry

    def _decided(self, name: str) -> dict[str, Any]:
        """What people decided about a stage, and its deploy window, as ``status`` shows them."""
        now = self.clock()
        state = self.store.environment(self.settings.name, name)
        stage = self.stage(name)
        window: dict[str, Any] | None = None
        if stage.windows is not None:
            windows = stage.windows.windows()
            is_open, opens = domain.window_state(windows, now)
            window = {"timezone": windows.zone_name, "open": is_open, "opens": _iso(opens)}
        return {
            "locked": {"at": _iso(state.locked_at), "by": state.locked_by, "reason": state.lock_reason}
            if state.locked
            else None,
            "frozen": {
                "at": _iso(state.frozen_at),
                "by": state.frozen_by,
                "reason": state.freeze_reason,
                "until": _iso(state.frozen_until),
            }
            if state.frozen(now)
            else None,
            "override": {
                "release": state.override_release,
                "by": state.override_by,
                "reason": state.override_reason,
            }
            if state.override_release is not None
            else None,
            "window": window,
        }

    def _release_running(self, live: HerokuRelease) -> Release | None:
        """The controller's release whose slug ``live`` runs (the same slug on staging and production)."""
        for release in self.store.history(self.settings.name, 200):
            if live.slug_id and release.staging_slug_id == live.slug_id:
                return release
        return None


__all__ = [
    "Services",
    "SettleTimeout",
    "event_json",
    "frozen_text",
    "given_reason",
    "parse_until",
    "release_detail",
    "release_summary",
]
