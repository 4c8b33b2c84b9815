"""The use cases the CLI, the scheduler and (later) the web app and runbooks share.

Nobody else calls the adapters: a command asks a service, the service asks the controller, the
store or a port, and answers in plain JSON-ready values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline import notes
from pipeline.config import Settings
from pipeline.controller import PRODUCTION_STATES, Controller, PassReport, utcnow
from pipeline.errors import ExternalError, PipelineError
from pipeline.model import Event, HerokuRelease, Release, Webhook
from pipeline.ports import Platform, ReleaseStore, SourceControl


class SettleTimeout(PipelineError):
    """``tick --settle`` ran out of time while something was still moving."""


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
        since = next(
            (
                r
                for r in self.store.history(self.settings.name, 500)
                if (r.id or 0) < release_id and r.state in PRODUCTION_STATES
            ),
            None,
        )
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
        return {"pipeline": self.settings.name, "environments": environments, "releases": waiting}

    def _environment(self, stage: str, app: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"stage": stage, "app": app}
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

    def _release_running(self, live: HerokuRelease) -> Release | None:
        """The controller's release whose slug ``live`` runs (the same slug on staging and production)."""
        for release in self.store.history(self.settings.name, 200):
            if live.slug_id and release.staging_slug_id == live.slug_id:
                return release
        return None


# --- JSON shapes ------------------------------------------------------------------------------


def release_summary(r: Release) -> dict[str, Any]:
    """The history contract: id, commit, state, approvals, staging, production, backup, created_at
    (kept stable for other tools), plus fields added since."""
    return {
        "id": r.id,
        "commit": r.commit,
        "state": str(r.state),
        "approvals": [{"user": a.user.username, "at": _iso(a.at)} for a in r.counted_approvals],
        "staging": {"app": r.staging_app, "release": r.staging_release_version}
        if r.staging_release_version is not None
        else None,
        "production": {"app": r.production_app, "release": r.production_release_version}
        if r.production_release_version is not None
        else None,
        "backup": {"id": r.backup_id, "name": r.backup_name} if r.backup_id else None,
        "created_at": _iso(r.created_at),
        "updated_at": _iso(r.updated_at),
        "branch": r.branch,
        "reason": r.reason,
        "pull_request": {"id": r.pull_request_id, "url": r.pull_request_url} if r.pull_request_id else None,
        "rollback": {"app": r.production_app, "release": r.rollback_release_version}
        if r.rollback_release_version is not None
        else None,
    }


def release_detail(r: Release) -> dict[str, Any]:
    """Everything about one release: the summary, its contents, and every approval seen."""
    return release_summary(r) | {
        "pipeline": r.pipeline,
        "release_branch": r.release_branch,
        "staging_verified_at": _iso(r.staging_verified_at),
        "approved_at": _iso(r.approved_at),
        "released_at": _iso(r.released_at),
        "previous_production_release": r.previous_release_version,
        "approvals_seen": [
            {
                "user": a.user.username,
                "account_id": a.user.account_id,
                "uuid": a.user.uuid,
                "kind": a.kind,
                "at": _iso(a.at),
                "counted": a.counted,
                "reason": a.reason,
                "pull_request": a.pull_request_id,
                "commit": a.commit,
                "policy_digest": a.policy_digest,
            }
            for a in r.approvals
        ],
        "changes": [
            {"id": c.id, "title": c.title, "author": c.author.username if c.author else None, "url": c.url}
            for c in r.changes
        ],
        "commits": [
            {"hash": c.hash, "message": c.message, "author": c.author.username if c.author else c.author_raw}
            for c in r.commits
        ],
        "feedback": list(r.feedback),
    }


def event_json(e: Event) -> dict[str, Any]:
    return {
        "at": _iso(e.at),
        "kind": e.kind,
        "actor": e.actor,
        "reason": e.reason,
        "from": str(e.state_from) if e.state_from else None,
        "to": str(e.state_to) if e.state_to else None,
        "refs": e.refs,
        "detail": e.detail,
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None
