"""The JSON views the use cases answer with: a release in the history contract and in full, an
event, and the status of every environment; and the reading use cases that build them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipeline import domain, notes
from pipeline.controller import production_release_before
from pipeline.errors import ExternalError
from pipeline.model import Event, HerokuRelease, Release
from pipeline.services.wiring import Wiring

# --- Reading ---------------------------------------------------------------------------------


def history(services: Wiring, limit: int = 50) -> list[dict[str, Any]]:
    """Releases newest first as ``release_summary``, for ``Services.history``."""
    return [release_summary(r) for r in services.store.history(services.settings.name, limit)]


def show(services: Wiring, release_id: int) -> dict[str, Any]:
    """One release as ``release_detail``, with its notes and events, for ``Services.show``."""
    release = services.store.get(release_id)
    since = production_release_before(services.store, services.settings.name, release_id)
    detail = release_detail(release)
    detail["notes"] = {
        "since": {"release": since.id, "commit": since.commit} if since else None,
        "base_commit": release.base_commit,
        "production_branch": services.settings.source.production_branch,
        "text": notes.release_notes(release, since, services.settings.source.production_branch),
    }
    return detail | {"events": [event_json(e) for e in services.store.events(release_id)]}


def log(services: Wiring, environment: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Events newest first as ``event_json``, for ``Services.log``."""
    name = services.stage(environment).name if environment else None
    return [event_json(e) for e in services.store.log(services.settings.name, name, limit)]


def status(services: Wiring) -> dict[str, Any]:
    """Every environment and what is in flight, for ``Services.status``."""
    environments = []
    for stage in services.settings.stages:
        environments.append(_environment(services, stage.name, stage.app))
    waiting = [
        {
            "id": r.id,
            "commit": r.commit,
            "state": str(r.state),
            "since": iso(r.updated_at),
            "waiting_on": r.reason,
            "pull_request": r.pull_request_url,
        }
        for r in services.store.active(services.settings.name)
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
        for r in services.store.rollbacks(services.settings.name, active=True)
    ]
    return {
        "pipeline": services.settings.name,
        "environments": environments,
        "releases": waiting,
        "rollbacks": rolling,
    }


def _environment(services: Wiring, stage: str, app: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"stage": stage, "app": app} | _decided(services, stage)
    live: HerokuRelease | None = None
    if services.platform is not None:
        try:
            live = services.platform.current_release(app)
        except ExternalError as exc:
            entry["error"] = str(exc)
    if live is None:
        entry["release"] = None
        return entry
    ours = _release_running(services, live)
    entry["release"] = {
        "version": live.version,
        "since": iso(live.created_at),
        "description": live.description,
        "commit": ours.commit if ours else None,
        "release_id": ours.id if ours else None,
        "approved_by": [a.user.username for a in ours.counted_approvals] if ours else [],
    }
    return entry


def _decided(services: Wiring, name: str) -> dict[str, Any]:
    """What people decided about a stage, and its deploy window, as ``status`` shows them."""
    now = services.clock()
    state = services.store.environment(services.settings.name, name)
    stage = services.stage(name)
    window: dict[str, Any] | None = None
    if stage.windows is not None:
        windows = stage.windows.windows()
        is_open, opens = domain.window_state(windows, now)
        window = {"timezone": windows.zone_name, "open": is_open, "opens": iso(opens)}
    return {
        "locked": {"at": iso(state.locked_at), "by": state.locked_by, "reason": state.lock_reason}
        if state.locked
        else None,
        "frozen": {
            "at": iso(state.frozen_at),
            "by": state.frozen_by,
            "reason": state.freeze_reason,
            "until": iso(state.frozen_until),
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


def _release_running(services: Wiring, live: HerokuRelease) -> Release | None:
    """The controller's release whose slug ``live`` runs (the same slug on staging and production)."""
    for release in services.store.history(services.settings.name, 200):
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
        "approvals": [{"user": a.user.username, "at": iso(a.at)} for a in r.counted_approvals],
        "staging": {"app": r.staging_app, "release": r.staging_release_version}
        if r.staging_release_version is not None
        else None,
        "production": {"app": r.production_app, "release": r.production_release_version}
        if r.production_release_version is not None
        else None,
        "backup": {"id": r.backup_id, "name": r.backup_name} if r.backup_id else None,
        "created_at": iso(r.created_at),
        "updated_at": iso(r.updated_at),
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
        "staging_verified_at": iso(r.staging_verified_at),
        "approved_at": iso(r.approved_at),
        "released_at": iso(r.released_at),
        "previous_production_release": r.previous_release_version,
        "approvals_seen": [
            {
                "user": a.user.username,
                "account_id": a.user.account_id,
                "uuid": a.user.uuid,
                "kind": a.kind,
                "at": iso(a.at),
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
        "release": e.release_id,
        "environment": e.environment,
        "at": iso(e.at),
        "kind": e.kind,
        "actor": e.actor,
        "reason": e.reason,
        "from": str(e.state_from) if e.state_from else None,
        "to": str(e.state_to) if e.state_to else None,
        "refs": e.refs,
        "detail": e.detail,
    }


def iso(at: datetime | None) -> str | None:
    """A time as the views write it: ISO 8601, UTC as Z (None stays None)."""
    return at.isoformat().replace("+00:00", "Z") if at else None
