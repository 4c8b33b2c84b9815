"""The JSON views the use cases answer with (the history contract among them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipeline.model import Event, Release


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
        "release": e.release_id,
        "environment": e.environment,
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
